"""Cloud City client (python grpcio): makes the named calls in order on ONE
channel and prints "<Method> <STATUS>" per call, e.g. "GetName OK",
"SetAccessCode UNIMPLEMENTED". Exit code 0 whatever the statuses."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.environ.get("GW_PYGEN", os.path.dirname(__file__)))
import grpc  # noqa: E402
import cloudcity_pb2  # noqa: E402
import cloudcity_pb2_grpc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("calls", nargs="+", help="Method, Method*N, Method^ (with the big header, see"
                    " --metadata-bytes), WAIT:FILE (wait until FILE exists) or SLEEP:SECONDS")
    ap.add_argument("--metadata-bytes", type=int, default=0,
                    help="add an x-big header this long: to the calls marked ^, or to all if none is")
    ap.add_argument("--timeout", type=float, default=5)
    a = ap.parse_args()
    opts = [("grpc.max_metadata_size", 1 << 20)]
    with grpc.insecure_channel(a.target, options=opts) as ch:
        stub = cloudcity_pb2_grpc.DoorManagerStub(ch)
        md = [("x-big", "b" * a.metadata_bytes)] if a.metadata_bytes else None
        n = 0
        for spec in a.calls:
            if spec.startswith("SLEEP:"):
                time.sleep(float(spec[6:]))
                continue
            if spec.startswith("WAIT:"):
                for _ in range(600):
                    if os.path.exists(spec[5:]):
                        break
                    time.sleep(0.05)
                continue
            name, _, times = spec.partition("*")
            big = name.endswith("^")
            name = name.rstrip("^")
            marked = any(c.split("*")[0].endswith("^") for c in a.calls)
            for _ in range(int(times or 1)):
                n += 1
                try:
                    getattr(stub, name)(cloudcity_pb2.DoorRequest(door_id=n), timeout=a.timeout,
                                        metadata=md if (big or not marked) else None)
                    print(f"{name} OK", flush=True)
                except grpc.RpcError as e:
                    print(f"{name} {e.code().name} {e.details()!r}", flush=True)


if __name__ == "__main__":
    main()
