"""Services of an execution instance that its APIs and the CLI share, beside intake and sending:
reading events, publications, the instance's identity, the archive export and tracking."""
