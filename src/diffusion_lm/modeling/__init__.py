"""Model classes and diffusion math. Everything in this folder imports only torch and transformers, so it can be
saved next to a checkpoint as ``trust_remote_code`` code."""
