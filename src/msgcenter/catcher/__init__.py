"""The built-in SMTP catcher of ``msgcenter up``: catches sent mail so it can be read without a
mail server (SPEC §2); :mod:`~msgcenter.catcher.web` shows it."""
