"""The Remote Execution API of a real scheduler, over real gRPC, with a real worker:
the CAS, ByteStream, the action cache, Execute, operations, and bad input."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import grpc
import pytest
from buildgrid.common.protos.google.rpc import error_details_pb2

from o11n.client import Client as HttpClient
from tests.e2e.conftest import StartServer, StartWorker
from tests.reapi.client import (
    Client,
    bs_pb2,
    digest,
    make_action,
    ops_pb2,
    re_pb2,
    response_of,
    stage_of,
    write_request,
)
from tests.servers import ServerProcess, wait_for

OK, CANCELLED, INVALID, DEADLINE, NOT_FOUND, PRECONDITION = 0, 1, 3, 4, 5, 9


@pytest.fixture
def server(start_server: StartServer, start_worker: StartWorker) -> ServerProcess:
    """A scheduler serving the REAPI, and one worker of two cores tagged pool=a."""
    server = start_server(reapi=True)
    start_worker(server, "w1", cpus=2, extra=("--tag", "pool=a"))
    return server


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    assert server.reapi_port is not None
    reapi = Client(server.reapi_port)
    yield reapi
    reapi.close()


def jobs(server: ServerProcess) -> list[dict[str, object]]:
    with HttpClient(server.url, server.token) as http:
        return http.request("GET", "/api/v1/jobs", params={"limit": 100})["jobs"]  # type: ignore[no-any-return]


def code(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code()  # type: ignore[no-any-return]


def test_capabilities_advertise_sha256_batches_and_execution(client: Client) -> None:
    caps = client.capabilities.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name="x"))
    assert list(caps.cache_capabilities.digest_function) == [re_pb2.DigestFunction.SHA256]
    assert caps.cache_capabilities.action_cache_update_capabilities.update_enabled
    assert 0 < caps.cache_capabilities.max_batch_total_size_bytes <= 4 * 1024 * 1024
    assert caps.execution_capabilities.exec_enabled
    assert (caps.high_api_version.major, caps.high_api_version.minor) == (2, 2)


def test_cas_batches_check_every_digest(client: Client) -> None:
    good, other = b"good blob", b"other"
    request = re_pb2.BatchUpdateBlobsRequest()
    request.requests.add(digest=digest(good), data=good)
    request.requests.add(digest=digest(b"something else"), data=other)
    answers = client.cas.BatchUpdateBlobs(request).responses
    assert [a.status.code for a in answers] == [OK, INVALID]
    missing = client.cas.FindMissingBlobs(
        re_pb2.FindMissingBlobsRequest(blob_digests=[digest(good), digest(other), digest(b"")])
    ).missing_blob_digests
    assert list(missing) == [digest(other)]
    read = client.cas.BatchReadBlobs(
        re_pb2.BatchReadBlobsRequest(digests=[digest(good), digest(other)])
    ).responses
    assert [(r.status.code, r.data) for r in read] == [(OK, good), (NOT_FOUND, b"")]


def test_batches_over_the_advertised_size_are_refused(client: Client) -> None:
    big = b"x" * (4 * 1024 * 1024)
    request = re_pb2.BatchUpdateBlobsRequest()
    request.requests.add(digest=digest(big), data=big)
    with pytest.raises(grpc.RpcError) as caught:
        client.cas.BatchUpdateBlobs(request)
    assert code(caught.value) is grpc.StatusCode.INVALID_ARGUMENT
    huge = re_pb2.Digest(hash="a" * 64, size_bytes=10**9)
    with pytest.raises(grpc.RpcError) as caught:
        client.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=[huge]))
    assert code(caught.value) is grpc.StatusCode.INVALID_ARGUMENT


def test_bytestream_writes_resume_and_reads_take_offsets(client: Client) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    d = digest(data)
    name = f"main/uploads/1b4e/blobs/{d.hash}/{d.size_bytes}"
    half = len(data) // 2
    first = client.bytestream.Write(iter([write_request(name, data[:half], finish=False)]))
    assert first.committed_size == half
    status = client.bytestream.QueryWriteStatus(bs_pb2.QueryWriteStatusRequest(resource_name=name))
    assert (status.committed_size, status.complete) == (half, False)
    rest = client.bytestream.Write(iter([write_request(name, data[half:], offset=half)]))
    assert rest.committed_size == len(data)
    read = bs_pb2.ReadRequest(
        resource_name=f"main/blobs/{d.hash}/{d.size_bytes}", read_offset=10, read_limit=5000
    )
    assert b"".join(r.data for r in client.bytestream.Read(read)) == data[10:5010]
    again = client.bytestream.Write(
        iter([write_request(f"uploads/2/blobs/{d.hash}/{len(data)}", b"")])
    )
    assert again.committed_size == len(data)  # stored already: answered at once


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("not-a-resource", grpc.StatusCode.INVALID_ARGUMENT),
        (f"blobs/{'0' * 64}/3", grpc.StatusCode.NOT_FOUND),
        (f"a/blobs/{'0' * 63}/3", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_reads_get_their_status(client: Client, name: str, wanted: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(client.bytestream.Read(bs_pb2.ReadRequest(resource_name=name)))
    assert code(caught.value) is wanted


def test_a_write_whose_content_is_not_its_digest_is_refused(client: Client) -> None:
    d = digest(b"promised")
    name = f"uploads/3/blobs/{d.hash}/{d.size_bytes}"
    with pytest.raises(grpc.RpcError) as caught:
        client.bytestream.Write(iter([write_request(name, b"delivery")]))
    assert code(caught.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "SHA-256" in caught.value.details()  # type: ignore[attr-defined]
    assert client.cas.FindMissingBlobs(
        re_pb2.FindMissingBlobsRequest(blob_digests=[d])
    ).missing_blob_digests == [d]


def test_an_action_runs_as_a_job_and_its_result_is_cached(
    client: Client, server: ServerProcess
) -> None:
    script = (
        "mkdir -p dir/x && cat in/a.txt > out/b.txt && echo deep > dir/x/y"
        " && echo to-out && echo to-err >&2"
    )
    action = make_action(
        ["/bin/sh", "-c", script],
        inputs={"in/a.txt": b"hello"},
        output_files=("out/b.txt",),
        output_directories=("dir",),
    )
    response = client.execute(action)
    assert response.status.code == OK and not response.cached_result
    result = response.result
    assert result.exit_code == 0
    assert [f.path for f in result.output_files] == ["out/b.txt"]
    assert client.read(result.output_files[0].digest) == b"hello"
    tree = re_pb2.Tree()
    tree.ParseFromString(client.read(result.output_directories[0].tree_digest))
    assert client.read(tree.children[0].files[0].digest) == b"deep\n"
    assert client.read(result.stdout_digest) == b"to-out\n"
    assert client.read(result.stderr_digest) == b"to-err\n"
    assert result.execution_metadata.worker == "w1"
    (job,) = jobs(server)
    assert job["labels"]["o11n.reapi.action"] == f"{action.digest.hash}/{action.digest.size_bytes}"  # type: ignore[index]

    cached = client.execute(action)
    assert cached.cached_result and cached.result.output_files == result.output_files
    assert len(jobs(server)) == 1  # served without running
    from_ac = client.ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action.digest))
    assert from_ac.output_files == result.output_files
    again = client.execute(action, skip_cache_lookup=True)
    assert not again.cached_result and len(jobs(server)) == 2


def test_failures_and_do_not_cache_are_not_cached(client: Client, server: ServerProcess) -> None:
    failing = make_action(
        ["/bin/sh", "-c", "echo partial > o.txt; echo no >&2; exit 3"], output_files=("o.txt",)
    )
    failed = client.execute(failing).result
    assert failed.exit_code == 3 and client.read(failed.stderr_digest) == b"no\n"
    assert client.read(failed.output_files[0].digest) == b"partial\n"  # a failure's outputs too
    uncached = make_action(["/bin/true"], do_not_cache=True)
    assert client.execute(uncached).result.exit_code == 0
    for action in (failing, uncached):
        with pytest.raises(grpc.RpcError) as caught:
            client.ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action.digest))
        assert code(caught.value) is grpc.StatusCode.NOT_FOUND
        assert not client.execute(action).cached_result
    assert len(jobs(server)) == 4


def test_identical_actions_in_flight_share_one_job(client: Client, server: ServerProcess) -> None:
    action = make_action(["/bin/sh", "-c", "sleep 1; echo once"], output_paths=())
    client.upload(action.blobs)
    names: list[str] = []

    def run() -> None:
        for op in client.execute_stream(action):
            names.append(op.name)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(set(names)) == 1 and len(jobs(server)) == 1


def test_the_actions_platform_wins_over_the_commands(client: Client, server: ServerProcess) -> None:
    runs = make_action(
        ["/bin/true"], action_platform={"pool": "a"}, command_platform={"pool": "nowhere"}
    )
    assert client.execute(runs).status.code == OK
    waits = make_action(["/bin/true"], action_platform={"pool": "nowhere"})  # Action only
    client.upload(waits.blobs)
    first = next(client.execute_stream(waits))
    assert not first.done and stage_of(first) == re_pb2.ExecutionStage.QUEUED
    got = client.operations.GetOperation(ops_pb2.GetOperationRequest(name=first.name))
    assert not got.done
    client.operations.CancelOperation(ops_pb2.CancelOperationRequest(name=first.name))
    done = wait_for(
        lambda: (
            (
                op := client.operations.GetOperation(ops_pb2.GetOperationRequest(name=first.name))
            ).done
            and op
        )
    )
    assert response_of(done).status.code == CANCELLED


def test_timeouts_and_missing_inputs_are_statuses_not_failed_actions(client: Client) -> None:
    slow = make_action(["/bin/sh", "-c", "echo started; sleep 30"], timeout_s=1)
    answer = client.execute(slow)
    assert (
        answer.status.code == DEADLINE and client.read(answer.result.stdout_digest) == b"started\n"
    )
    missing = make_action(["/bin/cat", "f"], inputs={"f": b"never uploaded"})
    file_hash = digest(b"never uploaded").hash
    client.upload({k: v for k, v in missing.blobs.items() if k != file_hash})
    last = list(client.execute_stream(missing))[-1]
    status = response_of(last).status
    assert status.code == PRECONDITION
    details = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(details)
    assert [(v.type, v.subject) for v in details.violations] == [
        ("MISSING", f"blobs/{file_hash}/{len(b'never uploaded')}")
    ]


def test_unknown_instance_names_work_and_reserved_ones_are_refused(server: ServerProcess) -> None:
    assert server.reapi_port is not None
    named = Client(server.reapi_port, instance="team/linux")
    try:
        response = named.execute(make_action(["/bin/echo", "hi"]))
        assert response.status.code == OK and named.read(response.result.stdout_digest) == b"hi\n"
        with pytest.raises(grpc.RpcError) as caught:
            named.capabilities.GetCapabilities(
                re_pb2.GetCapabilitiesRequest(instance_name="a/blobs/b")
            )
        assert code(caught.value) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        named.close()


def test_an_unknown_operation_is_not_found(client: Client) -> None:
    for name in ("operations/999999", "nonsense", "operations/x-abc"):
        with pytest.raises(grpc.RpcError) as caught:
            client.operations.GetOperation(ops_pb2.GetOperationRequest(name=name))
        assert code(caught.value) is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            list(client.execution.WaitExecution(re_pb2.WaitExecutionRequest(name=name)))
        assert code(caught.value) is grpc.StatusCode.NOT_FOUND


def test_an_operation_outlives_a_scheduler_restart(client: Client, server: ServerProcess) -> None:
    action = make_action(
        ["/bin/sh", "-c", "sleep 2; echo survived > o.txt"], output_files=("o.txt",)
    )
    client.upload(action.blobs)
    first = next(client.execute_stream(action))
    assert not first.done
    server.kill()
    server.start()  # same port and data; the worker reports to the new process
    done = list(client.execution.WaitExecution(re_pb2.WaitExecutionRequest(name=first.name)))[-1]
    result = response_of(done).result
    assert client.read(result.output_files[0].digest) == b"survived\n"
    assert len(jobs(server)) == 1
    cached = client.execute(action)  # the result was cached by the new process
    assert cached.cached_result


def test_a_capped_store_evicts_old_blobs_but_keeps_cached_results(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    server = start_server(reapi=True, extra=("--cas-cap", "256K"))
    start_worker(server, "w1", cpus=2)
    assert server.reapi_port is not None
    client = Client(server.reapi_port)
    try:
        action = make_action(
            ["/bin/sh", "-c", "head -c 20000 /dev/zero > big.bin"], output_files=("big.bin",)
        )
        result = client.execute(action).result
        filler = [bytes([i]) * 30_000 for i in range(40)]  # 1.2 MB through a 256 KiB store
        for blob in filler:
            client.upload({digest(blob).hash: blob})
        missing = client.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(blob_digests=[digest(b) for b in filler])
        ).missing_blob_digests
        assert digest(filler[0]) in missing and digest(filler[-1]) not in missing
        kept = client.ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action.digest))
        assert client.read(kept.output_files[0].digest) == bytes(20000)
        assert kept.output_files == result.output_files
    finally:
        client.close()


def test_a_capped_store_keeps_the_inputs_of_a_queued_action(
    start_server: StartServer, start_worker: StartWorker
) -> None:
    """An action waiting for a worker pins its inputs: blobs written meanwhile push the
    store far over its cap, and the worker that comes later still finds them."""
    server = start_server(reapi=True, extra=("--cas-cap", "256K"))
    assert server.reapi_port is not None
    client = Client(server.reapi_port)
    try:
        payload = bytes(range(256)) * 80  # 20 KB
        action = make_action(
            ["/bin/sh", "-c", "cat in.bin > out.bin"],
            inputs={"in.bin": payload},
            output_files=("out.bin",),
            action_platform={"pool": "late"},
        )
        client.upload(action.blobs)
        first = next(client.execute_stream(action))
        assert not first.done  # queued: no worker has pool=late yet
        for i in range(40):  # 1.2 MB through a 256 KiB store
            blob = bytes([i]) * 30_000
            client.upload({digest(blob).hash: blob})
        start_worker(server, "late", cpus=1, extra=("--tag", "pool=late"))
        done = list(client.execution.WaitExecution(re_pb2.WaitExecutionRequest(name=first.name)))
        response = response_of(done[-1])
        assert response.status.code == OK, response.status.message
        assert client.read(response.result.output_files[0].digest) == payload
    finally:
        client.close()


def test_empty_directories_in_the_input_root_are_laid_out(client: Client) -> None:
    action = make_action(
        ["/bin/sh", "-c", 'test -d empty && test -d deep/er && test -z "$(ls -A empty)"'],
        inputs={"empty/": b"", "deep/er/": b"", "f.txt": b"f"},
    )
    response = client.execute(action)
    assert response.status.code == OK and response.result.exit_code == 0


@pytest.mark.parametrize("field", ["output_directories", "output_paths"])
def test_an_output_directory_left_empty_has_an_empty_tree(client: Client, field: str) -> None:
    action = make_action(
        ["/bin/sh", "-c", "mkdir -p out holder/inner"], **{field: ("out", "holder", "never")}
    )
    result = client.execute(action).result
    assert result.exit_code == 0 and [d.path for d in result.output_directories] == [
        "out",
        "holder",
    ]
    out, holder = (
        re_pb2.Tree.FromString(client.read(d.tree_digest)) for d in result.output_directories
    )
    assert out == re_pb2.Tree(root=re_pb2.Directory())
    assert [d.name for d in holder.root.directories] == ["inner"]
    assert list(holder.children) == [re_pb2.Directory()]


def test_output_paths_with_glob_characters_are_literal(
    client: Client, server: ServerProcess
) -> None:
    script = (
        "for f in 'a*.txt' ab.txt ac.txt 'x?' xa '[a]' a; do echo \"$f\" > \"$f\"; done"
        " && mkdir 'd*' dx && echo in > 'd*/f' && echo out > dx/f"
    )
    action = make_action(
        ["/bin/sh", "-c", script],
        output_files=("a*.txt", "x?", "[a]"),
        output_directories=("d*",),
    )
    result = client.execute(action).result
    assert result.exit_code == 0
    assert [(f.path, client.read(f.digest)) for f in result.output_files] == [
        ("a*.txt", b"a*.txt\n"),
        ("x?", b"x?\n"),
        ("[a]", b"[a]\n"),
    ]
    (folder,) = result.output_directories
    tree = re_pb2.Tree.FromString(client.read(folder.tree_digest))
    assert folder.path == "d*" and [f.name for f in tree.root.files] == ["f"]
    (job,) = jobs(server)
    with HttpClient(server.url, server.token) as http:
        attempt = http.request("GET", f"/api/v1/jobs/{job['id']}")["attempts"][-1]
        stored = json.loads(http.get_blob(attempt["outputs"]))
    assert sorted(stored["entries"]) == ["[a]", "a*.txt", "d*/f", "x?"]  # nothing else uploaded
