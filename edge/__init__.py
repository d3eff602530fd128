"""wave-edge: the service that composes streaming, analytics and retention."""
