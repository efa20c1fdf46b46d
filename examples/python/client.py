#!/usr/bin/env python3
"""A small vmware-grpc-gateway client: lists the upstreams, lists a vCenter's tasks, watches
one task to its end printing each event, and shows how an error's details decode.

Stubs are generated, not committed:

    scripts/gen-clients.sh python          # writes gen/python, installs .venv
    .venv/bin/python examples/python/client.py --target localhost:50051

The default task is the demo's DEMO_QUICK_TASK, which runs for the first 15 s after the demo
starts; later it is SUCCEEDED already and the watch shows its snapshot and ends. Exits 0 when
every step worked, 1 otherwise.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("GEN_PYTHON", os.path.join(HERE, "..", "..", "gen", "python")))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402  (googleapis-common-protos)
from grpc_status import rpc_status  # noqa: E402
from vmware.gateway.v1 import (  # noqa: E402
    common_pb2,
    tasks_pb2,
    tasks_pb2_grpc,
    upstreams_pb2,
    upstreams_pb2_grpc,
)

QUICK_TASK = "upstreams/vc1/tasks/52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d13"
DEMO_SERVICES = ["com.vmware.vcenter.VM", "com.vmware.vcenter.vm.hardware",
                 "com.vmware.content.library.item"]


def error_reason(err: grpc.RpcError) -> str:
    """The gateway's ErrorInfo.reason, decoded from grpc-status-details-bin."""
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return f"{info.reason} (upstreamReason={info.metadata.get('upstreamReason', '-')})"
    return "no ErrorInfo"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--task", default=QUICK_TASK, help="resource name of the task to watch")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds the watch may take")
    args = ap.parse_args()

    with grpc.insecure_channel(args.target) as channel:
        upstreams = upstreams_pb2_grpc.UpstreamServiceStub(channel)
        tasks = tasks_pb2_grpc.TaskServiceStub(channel)

        print("upstreams:")
        for u in upstreams.ListUpstreams(upstreams_pb2.ListUpstreamsRequest(), timeout=10).upstreams:
            print(f"  {u.name:<22} {common_pb2.UpstreamKind.Name(u.kind)}")

        # Page through a list: pass next_page_token back until it is empty.
        req = tasks_pb2.ListTasksRequest(
            parent="upstreams/vc1",
            filter=tasks_pb2.TaskFilter(services=DEMO_SERVICES),
            page_size=10,
        )
        count = 0
        while True:
            page = tasks.ListTasks(req, timeout=10)
            count += len(page.tasks)
            if not page.next_page_token:
                break
            req.page_token = page.next_page_token
        print(f"upstreams/vc1 lists {count} tasks of the demo services")

        print(f"watching {args.task}:")
        watch = tasks_pb2.WatchTaskRequest(
            name=args.task, heartbeat_interval=duration_pb2.Duration(seconds=5)
        )
        last = None
        for event in tasks.WatchTask(watch, timeout=args.timeout):
            t = event.task
            print(f"  {common_pb2.EventType.Name(event.type):<20} {tasks_pb2.TaskState.Name(t.state):<22}"
                  f" {t.progress.percent:>3} %")
            last = t
        if last is None or not last.done:
            print("the watch ended before the task was done", file=sys.stderr)
            return 1
        print(f"ended: {tasks_pb2.TaskState.Name(last.state)}")

        try:
            tasks.GetTask(tasks_pb2.GetTaskRequest(name="upstreams/vc1/tasks/no-such-task"), timeout=10)
            print("GetTask of a missing task succeeded", file=sys.stderr)
            return 1
        except grpc.RpcError as err:
            print(f"a missing task: {err.code().name}, reason {error_reason(err)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
