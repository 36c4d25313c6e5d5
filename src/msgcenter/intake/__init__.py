"""Event intake: the service that stores events, and its SOAP and REST adapters."""
