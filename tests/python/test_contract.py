"""What a Python client author relies on: stubs generated from the whole proto/ tree import
beside googleapis-common-protos, and the gateway's error details decode with grpcio-status.

Run by .ci/python after `scripts/gen-clients.sh python`; the live tests need GATEWAY_ADDR
(a running demo) and are skipped without it outside CI.
"""

import importlib
import os
import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GEN = pathlib.Path(os.environ.get("GEN_PYTHON", ROOT / "gen" / "python"))
sys.path.insert(0, str(GEN))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

ADDR = os.environ.get("GATEWAY_ADDR")


class GeneratedStubs(unittest.TestCase):
    def test_every_proto_file_generates_a_module_and_nothing_under_google(self):
        protos = sorted((ROOT / "proto").rglob("*.proto"))
        self.assertTrue(protos)
        for proto in protos:
            rel = proto.relative_to(ROOT / "proto").with_suffix("")
            self.assertEqual(rel.parts[0], "vmware", f"{proto} is outside the published contract")
            module = importlib.import_module(".".join(rel.parts) + "_pb2")
            self.assertTrue(module.DESCRIPTOR.package.startswith("vmware.gateway"))
        self.assertFalse((GEN / "google").exists(), "generated code must not shadow google.*")

    def test_error_details_come_from_googleapis_common_protos(self):
        self.assertNotIn(str(GEN), error_details_pb2.__file__)
        # All ten messages, DebugInfo among them (a partial copy once shadowed it).
        for name in ["ErrorInfo", "RetryInfo", "DebugInfo", "QuotaFailure", "PreconditionFailure",
                     "BadRequest", "RequestInfo", "ResourceInfo", "Help", "LocalizedMessage"]:
            self.assertTrue(hasattr(error_details_pb2, name), name)

    def test_services_have_their_methods(self):
        from vmware.gateway.v1 import runspaces_pb2, tasks_pb2, upstreams_pb2

        def methods(module, service):
            return {m.name for m in module.DESCRIPTOR.services_by_name[service].methods}

        self.assertEqual(methods(tasks_pb2, "TaskService"),
                         {"GetTask", "ListTasks", "CancelTask", "WatchTask", "WaitTask"})
        self.assertEqual(methods(runspaces_pb2, "RunspaceService"),
                         {"CreateRunspace", "GetRunspace", "ListRunspaces", "DeleteRunspace",
                          "WatchRunspace"})
        self.assertEqual(methods(upstreams_pb2, "UpstreamService"),
                         {"ListUpstreams", "GetUpstream"})


def details(err):
    """The decoded detail messages of an RpcError, by type name."""
    status = rpc_status.from_call(err)
    out = {}
    for any_ in status.details if status else []:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.LocalizedMessage, error_details_pb2.ResourceInfo,
                    error_details_pb2.RetryInfo):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out[cls.DESCRIPTOR.name] = msg
    return out


@unittest.skipUnless(ADDR or os.environ.get("CI"), "set GATEWAY_ADDR to a running demo")
class AgainstTheDemo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not ADDR:
            raise RuntimeError("CI is set but GATEWAY_ADDR is not")
        from vmware.gateway.v1 import tasks_pb2_grpc

        cls.channel = grpc.insecure_channel(ADDR)
        cls.tasks = tasks_pb2_grpc.TaskServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def test_a_bad_name_decodes_to_error_info_and_bad_request(self):
        from vmware.gateway.v1 import tasks_pb2

        with self.assertRaises(grpc.RpcError) as ctx:
            self.tasks.GetTask(tasks_pb2.GetTaskRequest(name="tasks/x"), timeout=10)
        err = ctx.exception
        self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT)
        d = details(err)
        self.assertEqual(d["ErrorInfo"].reason, "INVALID_NAME")
        self.assertEqual(d["ErrorInfo"].domain, "vmware-grpc-gateway")
        self.assertEqual(d["BadRequest"].field_violations[0].field, "name")

    def test_a_missing_task_is_not_found_on_vcenter(self):
        from vmware.gateway.v1 import tasks_pb2

        with self.assertRaises(grpc.RpcError) as ctx:
            self.tasks.GetTask(tasks_pb2.GetTaskRequest(name="upstreams/vc1/tasks/no-such-task"),
                               timeout=10)
        d = details(ctx.exception)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(d["ErrorInfo"].reason, "NOT_FOUND")
        self.assertEqual(d["ErrorInfo"].metadata["upstream"], "vc1")
        self.assertIn("ResourceInfo", d)

    def test_wait_with_a_zero_duration_answers_the_current_state(self):
        from vmware.gateway.v1 import tasks_pb2

        task = self.tasks.WaitTask(tasks_pb2.WaitTaskRequest(
            name="upstreams/vc1/tasks/52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11",
            timeout=duration_pb2.Duration(seconds=0)), timeout=10)
        self.assertEqual(task.state, tasks_pb2.TASK_STATE_RUNNING)

    def test_a_negative_duration_is_invalid_duration(self):
        from vmware.gateway.v1 import tasks_pb2

        with self.assertRaises(grpc.RpcError) as ctx:
            self.tasks.WaitTask(tasks_pb2.WaitTaskRequest(
                name="upstreams/vc1/tasks/52f6c7a4-7c8e-4d39-9b0b-3a1c8f0e2d11",
                timeout=duration_pb2.Duration(seconds=-1)), timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(details(ctx.exception)["ErrorInfo"].reason, "INVALID_DURATION")


if __name__ == "__main__":
    unittest.main()
