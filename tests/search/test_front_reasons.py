from search.front_reasons import front_reasons
from search.pareto import Objective, pareto_front

TRIO = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]


def _member(trial, eer, size, latency):
    return {"trial": trial, "eer": eer, "size_bytes": size, "latency_ms": latency}


def test_each_member_names_the_objective_that_keeps_it_on_the_front():
    members = [
        _member(14, 0.0725, 305_222, 3.520),
        _member(0, 0.0736, 168_940, 3.141),
        _member(1, 0.0749, 129_338, 3.161),
        _member(2, 0.0750, 89_736, 3.161),
    ]
    assert front_reasons(members, TRIO) == [
        "lowest eer",
        "lower eer than trials 1, 2, the members no worse on size_bytes and latency_ms",
        "lower eer than trial 2, the member no worse on size_bytes and latency_ms",
        # Trial 2 ties trials 0 and 1 on latency (within 10%), so only its size is clearly best.
        "lowest size_bytes",
    ]


def test_a_member_clearly_best_on_several_objectives_names_them_all():
    members = [_member(0, 0.05, 100_000, 2.0), _member(1, 0.04, 200_000, 3.0)]
    assert front_reasons(members, TRIO) == ["lowest size_bytes and lowest latency_ms", "lowest eer"]


def test_maximised_objectives_read_highest():
    objectives = [Objective("si_sdri", "max"), Objective("size_bytes", "min")]
    members = [{"trial": 0, "si_sdri": 9.0, "size_bytes": 2.0}, {"trial": 1, "si_sdri": 8.0, "size_bytes": 1.0}]
    assert front_reasons(members, objectives) == ["highest si_sdri", "lowest size_bytes"]


def test_members_no_objective_tells_apart_name_each_other():
    members = [_member(3, 0.05, 100_000, 3.0), _member(4, 0.05, 100_000, 3.1), _member(5, 0.04, 200_000, 3.0)]
    reasons = front_reasons(members, TRIO)
    assert reasons[0].endswith("; no objective tells it apart from trial 4")
    assert reasons[1].endswith("; no objective tells it apart from trial 3")
    assert reasons[0].startswith("lowest size_bytes") and reasons[2] == "lowest eer"


def test_a_member_every_rival_beats_on_two_objectives_says_so():
    objectives = [Objective(metric, "min") for metric in "abc"]
    members = [{"trial": t, **dict(zip("abc", v))} for t, v in enumerate([(1, 1, 1), (0, 2, 2), (2, 0, 2), (2, 2, 0)])]
    assert front_reasons(members, objectives)[0] == "every other member is clearly worse on at least two objectives"


def test_members_kept_in_a_cycle_of_near_ties_say_who_beats_them():
    objectives = [Objective(metric, "min", 1.0) for metric in "abc"]
    rows = [{"trial": t, **dict(zip("abc", v))} for t, v in enumerate([(0, 1, 1), (1.5, 0.1, 0.1), (0.6, 1.2, -0.8)])]
    members = [rows[index] for index in pareto_front(rows, objectives)]
    reasons = front_reasons(members, objectives)
    assert [reason.split(":")[0] for reason in reasons] == [
        "kept although trial 2 beats it", "kept although trial 0 beats it", "kept although trial 1 beats it",
    ]


def test_a_member_without_every_objective_gets_no_reason():
    reasons = front_reasons([_member(0, 0.05, 1.0, 3.0), {"trial": 1, "eer": 0.04}], TRIO)
    assert reasons == ["lowest eer, lowest size_bytes and lowest latency_ms", ""]
