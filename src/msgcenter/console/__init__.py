"""The web console of both instances (SPEC §4 "Console"): server-rendered pages over the same
services as the REST API, with htmx for partial updates and Chart.js for charts, both vendored
in ``static/vendor``."""
