"""farm: a hardware-in-the-loop test farm for edge-AI model deployment."""

import logging

__version__ = "0.1.0"

# farm makes every record; its handlers choose: a board's log file takes all of its board's, the console
# what -v / -q say (farm/ui/console.py).
logging.getLogger(__name__).setLevel(logging.DEBUG)
