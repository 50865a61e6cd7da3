"""Node functions of the example workflows (``examples/*.yaml``)."""
