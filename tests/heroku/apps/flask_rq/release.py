"""Release phase: records the environment it ran with, as a migration would run."""

import json
import os

from redis import Redis

Redis.from_url(os.environ["REDIS_URL"]).set("release:environment", json.dumps(dict(os.environ)))
print("release phase ran as", os.environ.get("DYNO"))
