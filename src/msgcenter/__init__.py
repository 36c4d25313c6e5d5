"""msgcenter: transactional messaging platform (execution and control instances)."""

__version__ = "0.1.0"
