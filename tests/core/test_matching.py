"""The queue index: tag matching, resource fit, fair order, removal."""

from __future__ import annotations

from o11n.core.matching import QueueIndex, as_tags

ANY = (64.0, 2**40, 8)
X86 = as_tags({"arch": "x86_64", "os": "linux"})


def add(
    index: QueueIndex,
    job_id: int,
    tenant: str = "t",
    priority: int = 0,
    tags: dict[str, str] | None = None,
    resources: tuple[float, int, int] = (1.0, 0, 0),
) -> None:
    index.add(job_id, tenant, priority, as_tags(tags or {}), resources)


def drain(index: QueueIndex, worker: frozenset[tuple[str, str]] = X86) -> list[int]:
    taken = []
    while (match := index.consume(worker, ANY)) is not None:
        taken.append(match.job_id)
    return taken


def test_worker_takes_jobs_whose_tags_it_has() -> None:
    index = QueueIndex()
    add(index, 1, tags={"arch": "x86_64"})
    add(index, 2, tags={"arch": "aarch64"})
    add(index, 3, tags={"arch": "x86_64", "os": "linux"})
    add(index, 4, tags={})
    add(index, 5, tags={"arch": "x86_64", "gpu": "a100"})
    assert sorted(drain(index)) == [1, 3, 4]
    assert len(index) == 2


def test_resources_must_fit_what_is_free() -> None:
    index = QueueIndex()
    add(index, 1, resources=(8.0, 0, 0))
    add(index, 2, resources=(1.0, 32 * 2**30, 0))
    add(index, 3, resources=(1.0, 2**30, 1))
    add(index, 4, resources=(2.0, 2**30, 0))
    free = (4.0, 4 * 2**30, 0)
    match = index.consume(X86, free)
    assert match is not None and match.job_id == 4
    assert index.consume(X86, free) is None


def test_priority_then_submit_order_within_a_tenant() -> None:
    index = QueueIndex()
    add(index, 1, priority=0)
    add(index, 2, priority=5, tags={"arch": "x86_64"})
    add(index, 3, priority=5)
    add(index, 4, priority=-1)
    assert drain(index) == [2, 3, 1, 4]


def test_equal_weights_alternate_between_tenants() -> None:
    index = QueueIndex()
    for i in range(1, 11):
        add(index, i, tenant="a")
    for i in range(11, 14):
        add(index, i, tenant="b")
    order = [index.consume(X86, ANY) for _ in range(6)]
    tenants = [m.tenant for m in order if m]
    assert tenants.count("b") == 3 and tenants.count("a") == 3


def test_weights_set_the_share() -> None:
    index = QueueIndex()
    index.fairness.set_weight("big", 3)
    for i in range(400):
        add(index, i * 2, tenant="big")
        add(index, i * 2 + 1, tenant="small")
    tenants = [index.consume(X86, ANY).tenant for _ in range(200)]  # type: ignore[union-attr]
    assert tenants.count("big") == 150


def test_a_returning_tenant_gets_no_credit_for_idle_time() -> None:
    index = QueueIndex()
    for i in range(100):
        add(index, i, tenant="a")
    for _ in range(50):
        index.consume(X86, ANY)
    for i in range(100, 110):
        add(index, i, tenant="b")
    tenants = [index.consume(X86, ANY).tenant for _ in range(10)]  # type: ignore[union-attr]
    assert 4 <= tenants.count("b") <= 6


def test_fairness_skips_tenants_with_nothing_for_this_worker() -> None:
    index = QueueIndex()
    add(index, 1, tenant="a", tags={"arch": "aarch64"})
    add(index, 2, tenant="b", tags={"arch": "x86_64"})
    match = index.consume(X86, ANY)
    assert match is not None and match.job_id == 2


def test_removed_jobs_are_never_consumed() -> None:
    index = QueueIndex()
    for i in range(5):
        add(index, i)
    assert index.remove(2, "t")
    assert not index.remove(2, "t")
    assert drain(index) == [0, 1, 3, 4]
    assert index.counts_by_tenant() == {}


def test_a_job_added_again_after_removal_is_consumed_once() -> None:
    index = QueueIndex()
    add(index, 1)
    index.remove(1, "t")
    add(index, 1)
    add(index, 2)
    assert drain(index) == [1, 2]


def test_new_buckets_reach_workers_seen_before() -> None:
    index = QueueIndex()
    assert index.consume(X86, ANY) is None  # caches what this worker can serve
    add(index, 7, tags={"os": "linux"})
    match = index.consume(X86, ANY)
    assert match is not None and match.job_id == 7


def test_empty_buckets_are_swept(monkeypatch: object) -> None:
    import o11n.core.matching as matching

    index = QueueIndex()
    for i in range(matching.SWEEP_EMPTY_BUCKETS + 10):
        add(index, i, tags={"commit": f"c{i}"})
        assert index.consume(as_tags({"commit": f"c{i}"}), ANY) is not None
    add(index, 10**6, tags={"commit": "last"})
    assert len(index._buckets) < 100
    assert drain(index, as_tags({"commit": "last"})) == [10**6]


def test_counts_by_tenant() -> None:
    index = QueueIndex()
    add(index, 1, tenant="a")
    add(index, 2, tenant="a")
    add(index, 3, tenant="b")
    assert index.counts_by_tenant() == {"a": 2, "b": 1}


def test_constraints_on_attributes_pick_the_workers_that_may_take_a_job() -> None:
    from o11n.core.constraints import parse_constraints

    index = QueueIndex()
    south = parse_constraints([[{"name": "city", "operate": "LIKE", "value": "shen.*|guang.*"}]])
    big = parse_constraints([[{"name": "cores", "operate": "GREATER", "value": 16}]])
    index.add(1, "t", 0, as_tags({}), (1.0, 0, 0), south)
    index.add(2, "t", 0, as_tags({}), (1.0, 0, 0), big)
    beijing = as_tags({"city": "beijing", "cores": "8"})
    shenzhen = as_tags({"city": "shenzhen", "cores": "8"})
    large = as_tags({"city": "beijing", "cores": "32"})
    assert index.consume(beijing, ANY) is None
    assert index.consume(as_tags({}), ANY) is None  # a missing attribute fails the rule
    match = index.consume(shenzhen, ANY)
    assert match is not None and match.job_id == 1 and match.constraints == south
    match = index.consume(large, ANY)
    assert match is not None and match.job_id == 2
    index.add(3, "t", 0, as_tags({}), (1.0, 0, 0), south)  # a new bucket for known workers
    assert index.consume(beijing, ANY) is None
    assert index.consume(shenzhen, ANY) is not None


def test_demand_counts_queued_jobs_per_requirement_signature() -> None:
    index = QueueIndex()
    gpu = as_tags({"gpu": "a100"})
    index.add(1, "a", 0, gpu, (8.0, 0, 1))
    index.add(2, "b", 0, gpu, (8.0, 0, 1))
    index.add(3, "a", 0, frozenset(), (1.0, 0, 0))
    found = {(b.tags, b.resources): n for b, n in index.demand()}
    assert found == {(gpu, (8.0, 0, 1)): 2, (frozenset(), (1.0, 0, 0)): 1}
    index.remove(3, "a")
    assert [(b.tags, n) for b, n in index.demand()] == [(gpu, 2)]
