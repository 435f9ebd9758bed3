"""Model families: one file each, a plain nn.Module the evaluator can rank with, plus its training."""
