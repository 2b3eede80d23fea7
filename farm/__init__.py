"""farm: a hardware-in-the-loop test farm for edge-AI model deployment."""

__version__ = "0.1.0"
