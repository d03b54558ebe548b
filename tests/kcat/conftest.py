import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "python"))

# reuse the broker fixtures of the Python suite
from broker_fixtures import broker, broker_factory  # noqa: E402,F401
