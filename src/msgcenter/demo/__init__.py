"""The sample design and the walk of ``msgcenter up --demo``."""
