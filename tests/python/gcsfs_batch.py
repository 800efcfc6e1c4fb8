#!/usr/bin/env python3
"""gcsfs as a real client of Google Cloud Storage's batch endpoint: `GCSFileSystem.rm` deletes
several objects in one `multipart/mixed` batch posted to `{endpoint}/batch/storage/v1`, naming
each object with its `/` encoded (`DELETE /storage/v1/b/bkt/o/dir%2Fname`), and reads the
answer with its own parser. Reads (`exists`, `cat`) go straight to the service.

gcsfs batches only when its endpoint looks like Google's (`on_google`: the location contains
`storage.googleapis.com`); the test publishes its service under that path prefix of a loopback
address, so the client runs its batch code unchanged.

Usage: gcsfs_batch.py http://127.0.0.1:PORT/storage.googleapis.com
Prints one JSON summary line.
"""

import json
import os
import sys

# gcsfs's experimental extension asks Google's gRPC API what kind each bucket is before it
# does anything; a test service speaks only the JSON API, which is what is under test here.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import gcsfs  # noqa: E402


def main():
    endpoint = sys.argv[1]
    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=endpoint, project="test")
    names = ["bkt/dir/name", "bkt/with space/a b.txt", "bkt/keep"]
    summary = {"version": gcsfs.__version__, "on_google": fs.on_google}
    summary["before"] = {n: fs.exists(n) for n in names}
    summary["cat"] = fs.cat("bkt/dir/name").decode()
    try:
        summary["rm"] = [str(x) for x in fs.rm(["bkt/dir/name", "bkt/with space/a b.txt"])]
    except Exception as e:  # the client's own verdict, whatever it is
        summary["rm"] = "%s: %s" % (type(e).__name__, e)
    fs.invalidate_cache()
    summary["after"] = {n: fs.exists(n) for n in names}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
