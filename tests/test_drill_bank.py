"""The interview drill's question bank (drill/bank.toml): every entry is well formed, every seed question has its
entries, and every experiment, run live on real workers, observes the answer the bank states. A bank answer that a
live run contradicts fails here; so does an experiment that cannot tell a wrong answer from a right one."""
from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from coursekit import course
from coursekit.drill import bank
from coursekit.drill.bank import AnswerError
from coursekit.drill.lab import DrillLab

QUESTIONS = bank.load()
BY_ID = {q.id: q for q in QUESTIONS}

# -- the bank's shape ------------------------------------------------------------------------------------------


def test_the_manifest_points_to_the_bank_and_the_notebook():
    drill = course.drill()
    assert drill["bank"] == course.ROOT / "drill" / "bank.toml" and drill["bank"].exists()
    assert drill["notebook"] == course.ROOT / "notebooks" / "14_drill.ipynb"
    assert drill["question"] and drill["question_zh"]


def test_at_least_four_questions_per_chapter():
    chapters = [ch.id for ch in course.chapters()] + ["13"]
    counts = Counter(q.chapter for q in QUESTIONS)
    thin = {ch: counts[ch] for ch in dict.fromkeys(chapters) if int(ch) <= 13 and counts[ch] < 4}
    assert not thin, f"chapters with fewer than 4 drill questions: {thin}"


@pytest.mark.parametrize("q", QUESTIONS, ids=[q.id for q in QUESTIONS])
def test_every_entry_is_complete(q):
    assert q.question.strip().endswith(("?", ")", ".")) and q.question_zh.strip(), "a question in both languages"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in q.question_zh + q.explain_zh), "the Chinese text is Chinese"
    assert "`" in q.explain or "default" in q.explain, "the explanation names settings and their defaults"
    assert callable(q.function()), f"{q.experiment} is not a function of coursekit.drill.experiments"
    assert q.matches(q.answer) or q.kind == "keywords", "the stated answer passes its own comparison"
    if q.kind == "keywords":
        assert all(g.strip() for g in q.answer)


def test_a_malformed_entry_is_named(tmp_path):
    bad = tmp_path / "bank.toml"
    bad.write_text('[[question]]\nid = "03.x"\nchapter = "03"\nkind = "choice"\nquestion = "q?"\n'
                   'question_zh = "问？"\nanswer = "c"\nchoices = ["a", "b"]\nexperiment = "workers:prefetch_count"\n'
                   'explain = "e"\nexplain_zh = "解"\n')
    with pytest.raises(Exception, match=r"entry 1 \(03\.x\).*answer among them"):
        bank.load(bad)


# -- the seed note ---------------------------------------------------------------------------------------------
SEED = {
    "q1": ("celery怎么重试任务？ (components, delay/apply_async/apply, beat)",
           ["02.attempts", "02.default_delay", "01.retry_policy", "01.apply_messages", "00.where_body",
            "00.result_where", "11.who_runs"]),
    "q2": ("celery底层是怎么分配、调度任务的，多worker，启动多少个worker怎么决定？",
           ["03.default_concurrency", "03.competing", "03.prefetch"]),
    "q3": ("celery任务的优先级怎么配置的", ["04.zero_or_nine", "04.order", "04.lists"]),
    "q4": ("celery怎么排查错误的，任务丢失", ["06.late_child", "06.reject", "06.inspect_none", "07.inspect_active"]),
    "q5": ("Celery日志是什么样配置的", ["05.print_level", "05.stream", "05.root_handler", "05.after_setup"]),
    "q6": ("一个celery中起多个worker和不同的服务器起worker的区别", ["03.same_host", "11.two_beats"]),
    "p1": ("Worker 内存暴涨 / OOM", ["08.max_tasks", "08.memory_unit", "08.purge", "08.ttl", "08.ignore_result"]),
    "p2": ("Worker CPU 飙高 / 卡死", ["09.threads_processes", "09.prefork_processes", "09.solo_inspect"]),
    "p3": ("Redis连接丢失/BrokenPipeError", ["10.heartbeat", "10.max_connections"]),
    "p4": ("Redis队列卡住/backlog堆积", ["10.llen", "10.unacked"]),
    "p5": ("任务丢失", ["06.early_child", "06.late_child", "06.reject", "06.whole_kill"]),
    "p6": ("重复执行任务", ["07.set_nx", "06.reject"]),
    "p7": ("任务卡死不返回", ["07.inspect_active", "07.soft_limit", "07.hard_limit", "09.threads_limit"]),
}
"""Each of the seed note's six interview questions (q) and seven common problems (p), by its heading, and the bank
entries that answer it."""
CORRECTED = {"01.retry_policy", "03.same_host", "04.zero_or_nine", "06.late_child", "07.set_nx", "08.purge",
             "09.threads_limit", "10.llen", "10.heartbeat", "10.max_connections"}
"""Entries whose answer corrects what the seed note says (each says how in `corrects`)."""


def test_every_seed_question_maps_to_its_entries():
    assert sorted(SEED) == sorted(bank.SEEDS)
    for seed, (heading, ids) in SEED.items():
        missing = [i for i in ids if i not in BY_ID]
        assert not missing, f"{seed} ({heading}): no entries {missing}"
        unmarked = [i for i in ids if seed not in BY_ID[i].seed]
        assert not unmarked, f"{seed} ({heading}): {unmarked} do not say `seed = [\"{seed}\"]`"
    marked = {(s, q.id) for q in QUESTIONS for s in q.seed}
    listed = {(s, i) for s, (_, ids) in SEED.items() for i in ids}
    assert marked == listed, f"seed marks and this table disagree: {sorted(marked ^ listed)}"


def test_corrections_of_the_seed_say_what_was_wrong():
    assert {q.id for q in QUESTIONS if q.corrects} == CORRECTED


# -- reading a learner's answer --------------------------------------------------------------------------------
BAD_INPUT = [
    ("04.zero_or_nine", "z", "unknown choice 'z'"),
    ("04.zero_or_nine", "", "empty answer"),
    ("04.zero_or_nine", "1", "unknown choice '1'"),  # its options are numbers: no index there
    ("09.threads_limit", "3", "unknown choice '3'"),
    ("04.zero_or_nine", "   ", "empty answer"),
    ("02.attempts", "four", "'four' is not a number"),
    ("02.attempts", "nan", "finite"),
    ("04.order", "p0 p3 p6 p9 p1", "unknown task name(s) p1"),
    ("04.order", "p0 p3 p6 p9", "name each task once"),
    ("12.chain_order", "charge charge ship email", "name each task once"),
    ("01.broker_down", "", "empty answer"),
]


@pytest.mark.parametrize(("qid", "typed", "says"), BAD_INPUT)
def test_input_the_drill_cannot_read_gets_a_clear_message(qid, typed, says):
    with pytest.raises(AnswerError) as caught:
        BY_ID[qid].parse(typed)
    assert says in str(caught.value)


def test_input_in_chinese_mode_gets_a_chinese_message():
    with pytest.raises(AnswerError, match="不是数字"):
        BY_ID["02.attempts"].parse("四", lang="zh")


@pytest.mark.parametrize(("qid", "typed", "right"), [
    ("04.zero_or_nine", "a", True), ("04.zero_or_nine", "0", True), ("04.zero_or_nine", "9", False),
    ("04.zero_or_nine", "B", False), ("09.threads_limit", "1", True), ("09.threads_limit", "failure", False),
    ("02.attempts", "4", True), ("02.attempts", "3", False),
    ("02.default_delay", "181", True), ("02.default_delay", "3600", False),
    ("04.order", "none, p0, p3, p6, p9", True), ("04.order", "p0 > none > p3 > p6 > p9", False),
    ("01.broker_down", "kombu raises an operationalerror", True), ("01.broker_down", "it waits", False),
    ("11.beat_in_gevent", "refused: run a standalone beat", True), ("11.beat_in_gevent", "it runs", False),
])
def test_answers_are_read_and_judged(qid, typed, right):
    q = BY_ID[qid]
    assert q.matches(q.parse(typed)) is right


# -- every experiment, live ------------------------------------------------------------------------------------
GROUPS = {
    "a": ("basics", "retries", "canvas", "application"),
    "b": ("workers", "duplicates"),
    "c": ("priorities", "pools", "broker", "beat"),
    "d": ("loss", "logs", "memory"),
}
"""Experiment modules by test group: each group runs in one test process, one after another, on one DrillLab whose
workers its experiments share; the groups run side by side (tests/parallel.py)."""
WORKERS = {
    "a": ("plain", "pair_a", "pair_b"),
    "b": ("plain", "auto", "m1", "pair_a", "pair_b"),
    "c": ("plain", "late", "threads", "solo"),
    "d": ("plain", "late", "reject", "recycle", "memory"),
}
"""The shared workers each group's experiments use, started side by side when the group begins (one after another,
as the experiments first ask for them, cost about a third more)."""


def group_of(q: bank.Question) -> str:
    module = q.experiment.split(":")[0]
    return next(g for g, modules in GROUPS.items() if module in modules)


class Labs:
    """One DrillLab per group, in this test process; starting a group's lab closes the previous group's (its
    workers would only idle). Session-scoped, not module-scoped: a parametrized module fixture is set up again for
    every parameter index, that is for every question."""

    def __init__(self):
        self.group, self.lab = None, None

    def of(self, group: str) -> DrillLab:
        if group != self.group:
            self.close()
            self.group, self.lab = group, DrillLab()
            self.lab.worker(*WORKERS[group])
        return self.lab

    def close(self) -> None:
        if self.lab is not None:
            self.lab.close()
        self.group, self.lab = None, None


@pytest.fixture(scope="session")
def labs(redis_url):
    shared = Labs()
    yield shared
    shared.close()


LIVE = sorted(QUESTIONS, key=group_of)
LAST_OF_GROUP = {group_of(q): q for q in LIVE}
"""xdist runs a group's questions one after another in one test process (loadgroup), other tests before and after
them: the group's lab closes with its last question, not at the end of the session."""


@pytest.mark.parametrize("q", [pytest.param(q, marks=pytest.mark.xdist_group(f"drill-{group_of(q)}"),
                                            id=f"{group_of(q)}-{q.id}") for q in LIVE])
def test_bank_answer_holds_live(labs, q):
    try:
        holds_live(labs.of(group_of(q)), q)
    finally:
        if q is LAST_OF_GROUP[group_of(q)]:
            labs.close()  # the group is over: its workers must not answer the next test's inspect or ping


def holds_live(lab: DrillLab, q: bank.Question) -> None:
    observed = q.settle(lab)
    assert q.matches(observed), (f"{q.id}: the live run observed {observed!r}, the bank says {q.shown_answer()!r} "
                                 f"({q.experiment})")


def test_a_wrong_bank_answer_is_flagged_by_the_live_run(redis_url):
    """The comparison can fail: the same experiment, against a doctored copy of its entry, is caught."""
    with DrillLab() as own:
        right = BY_ID["01.apply_messages"]
        observed = right.settle(own)
        assert right.matches(observed)
        for wrong in (dataclasses.replace(right, answer=1), dataclasses.replace(right, answer=2)):
            assert not wrong.matches(observed), f"answer {wrong.answer} passed against an observed {observed}"
        choice = BY_ID["04.zero_or_nine"]
        assert not dataclasses.replace(choice, answer="9").matches("0")
        words = BY_ID["12.chord_fail"]
        assert not dataclasses.replace(words, answer=["ValueError"]).matches("FAILURE: ChordError")


def test_the_live_test_fails_on_a_doctored_bank(redis_url):
    """The live test's assertion, given an entry whose answer is wrong, fails naming what the run observed."""
    doctored = dataclasses.replace(BY_ID["01.apply_messages"], answer=3)
    with DrillLab() as lab, pytest.raises(AssertionError, match=r"01.apply_messages: the live run observed 0, "
                                                                   r"the bank says '3'"):
        holds_live(lab, doctored)


def test_a_closed_lab_leaves_no_ledger_or_backlog_behind(redis_url):
    import redis

    from coursekit import namespace

    with DrillLab() as lab:
        assert BY_ID["00.no_worker"].settle(lab) == "PENDING"  # one message left waiting in a queue of its own
        lab.ledger().write("k")
        made = list(lab._keys)
    client = redis.Redis.from_url(redis_url)
    left = [k for k in namespace.keys(client) if any(name in k.decode(errors="replace") for name in made)]
    client.close()
    assert made and not left, f"left behind: {left}"


def test_two_drills_at_once_do_not_serve_each_other(redis_url):
    """A notebook's drill and a terminal's, in one namespace: each experiment runs on its own drill's worker."""
    with DrillLab() as one, DrillLab() as two:
        one.worker("plain"), two.worker("plain")
        assert one.queue("plain") != two.queue("plain")
        for lab in (one, two, one, two):
            assert BY_ID["00.where_body"].settle(lab) == "a pool process of the worker"
