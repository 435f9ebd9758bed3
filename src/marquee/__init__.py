"""marquee: a research framework for personalized recommendation (retrieval, ranking, artwork bandits)."""

__version__ = "0.1.0"
