"""``msgcenter push FILE``: events read from a file, pushed to an execution instance over REST.

:mod:`~msgcenter.filepush.source` reads the file (JSON lines, or XML in the
SOAP shape converted to REST fields), :mod:`~msgcenter.filepush.service` sends
it in batches under idempotency keys, and :mod:`~msgcenter.filepush.cli` is
the command.
"""
