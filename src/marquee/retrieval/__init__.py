"""Two-tower retrieval: towers, sampled-softmax losses, a FAISS item index, the retrieval → ranking cascade and cold start."""
