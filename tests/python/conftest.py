import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from broker_fixtures import broker, broker_factory  # noqa: E402,F401
