"""SLURM job scripts: checked values, rendering, and the rendered scripts run by bash with fake Slurm tools.

The references are independent of the renderer: Slurm's documented time formats (sbatch(1) --time),
`bash -n` for syntax, and the argv a fake `srun`/`scontrol`/`python` on PATH records when bash really
runs a rendered script.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sporep_hpc import jobs
from sporep_hpc.cli import main
from sporep_hpc.errors import ParameterError

REPO = Path(__file__).resolve().parents[1]
BASH = "/bin/bash"

# The Slurm/MPI tools and interpreter a job script may call; fake_env puts a fake of each first on PATH.
FAKE_TOOLS = ("srun", "sbatch", "scontrol", "mpirun", "mpiexec", "python")


def _fake_tool(name: str) -> str:
    """A fake `name`: records its argv (NUL-terminated, so an argument with spaces or quotes stays one
    argument) to $FAKE_LOG/<name>.<n> for its n-th call, then exits with $FAKE_RC (default 0)."""
    return f"""#!/bin/bash
n=0
while [[ -e "$FAKE_LOG/{name}.$n" ]]; do n=$((n + 1)); done
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$FAKE_LOG/{name}.$n"
exit "${{FAKE_RC:-0}}"
"""


# A fake srun for the restart test: records its arguments, says it started, then runs until SIGUSR1,
# on which it "checkpoints" and exits with code 5, as `sporep-hpc run` does.
FAKE_PREEMPTIBLE_SRUN = """#!/bin/bash
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$FAKE_LOG/srun.0"
trap 'echo usr1 > "$FAKE_LOG/srun.signal"; exit 5' USR1
touch "$FAKE_LOG/srun.started"
for _ in $(seq 600); do sleep 0.05; done
exit 0
"""


def _install(bindir: Path, name: str, text: str) -> Path:
    path = bindir / name
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_env(tmp_path):
    """A PATH whose FAKE_TOOLS are fakes that log their argv under tmp_path/log."""
    bindir = tmp_path / "bin"
    log = tmp_path / "log"
    bindir.mkdir()
    log.mkdir()
    for name in FAKE_TOOLS:
        _install(bindir, name, _fake_tool(name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bindir}:{env['PATH']}", FAKE_LOG=str(log))
    return env, bindir, log


def _calls(log: Path, tool: str) -> list[list[str]]:
    files = sorted(log.glob(f"{tool}.[0-9]*"), key=lambda p: int(p.suffix[1:]))
    return [p.read_text().split("\0")[:-1] for p in files]


def _bash_n(text: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    res = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, f"bash -n {name}: {res.stderr}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Three structure files, a list naming them (with a comment and blank lines); cwd is there."""
    monkeypatch.chdir(tmp_path)
    for name in ("a.cif", "b cif.cif", "c.cif"):
        (tmp_path / name).write_text("data_x\n")
    (tmp_path / "list.txt").write_text("# my structures\na.cif\n\n  b cif.cif  \nc.cif\nexamples:batio3\n")
    return tmp_path


def _sbatch(text: str, option: str) -> str:
    """The value of ``#SBATCH --option=value`` in a script (inline comment removed)."""
    (value,) = [
        line.split("=", 1)[1].split()[0]
        for line in text.splitlines()
        if line.startswith(f"#SBATCH --{option}=")
    ]
    return value


def _write_chunks(directory: Path, chunks: list[list[str]]) -> None:
    directory.mkdir()
    for i, entries in enumerate(chunks):
        (directory / jobs.CHUNK_FORMAT.format(i)).write_text("".join(e + "\n" for e in entries))


# --- values ---------------------------------------------------------------------------------------------

# Seconds of each format in sbatch(1) --time: "minutes", "minutes:seconds", "hours:minutes:seconds",
# "days-hours", "days-hours:minutes" and "days-hours:minutes:seconds" (computed by hand).
TIMES = [
    ("30", 1800),
    ("90", 5400),
    ("5:30", 330),
    ("01:00:00", 3600),
    ("36:00:00", 129600),
    ("2-0", 172800),
    ("1-12", 129600),
    ("1-12:30", 131400),
    ("1-00:00:01", 86401),
]


@pytest.mark.parametrize(("text", "seconds"), TIMES)
def test_parse_time_formats(text, seconds):
    assert jobs.parse_time(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["0", "0:00:00", "1:60", "1:60:00", "1:00:60", "1-24", "1-", "1h", "-5", "", "1:2:3:4", "UNLIMITED"],
)
def test_parse_time_rejects(text):
    with pytest.raises(ParameterError, match=r"time must be a Slurm time limit .*got"):
        jobs.parse_time(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ranks": 0}, r"ranks must be an integer in \[1, inf\); got 0"),
        ({"ranks": 2.5}, r"ranks must be an integer"),
        ({"threads": 0}, r"threads must be an integer in \[1, inf\); got 0"),
        ({"nodes": 2}, r"nodes must be 1 for template 'single-node'"),
        ({"job_name": "my job"}, r"job_name must be 1 to 64 characters"),
        ({"partition": "a b"}, r"partition must be"),
        ({"mem_per_cpu": "4GB"}, r"mem_per_cpu must be a positive integer"),
        ({"launcher": "aprun"}, r"launcher must be one of"),
        ({"python": "--export=ALL"}, r"python must be a non-empty command or path not starting with '-'"),
        ({"time": "25:61:00"}, r"time must be a Slurm time limit"),
        ({"run_args": ("-o", "x.h5")}, r"run_args must not set the output or the schedule"),
        ({"run_args": ("--schedule", "dynamic")}, r"run_args must not set the output or the schedule"),
        ({"schedule": "guided"}, r"schedule must be one of 'dynamic', 'static'; got 'guided'"),
        ({"setup": ("module load a\nrm -rf /",)}, r"setup must be text without control characters"),
        (
            {"ranks": 8, "threads": 4, "cores_per_node": 16},
            r"ranks per node x threads must be in \[1, 16\].*8 x 4 = 32",
        ),
        ({"structures": None}, r"structures \(a list file\) is required"),
    ],
)
def test_spec_rejects_with_name_range_value(kwargs, message):
    values = {"template": "single-node", "structures": "list.txt", **kwargs}
    with pytest.raises(ParameterError, match=message):
        jobs.JobSpec(**values)


# Control characters end a comment or a line of the script: "x\n touch PWNED #" after "# Output: " is a
# command. C0 (newline, carriage return, NUL, tab, escape), DEL and C1 (NEL) are all refused.
CONTROL = ["\n touch PWNED #", "\r", "\0", "\t", "\x1b[2J", "\x7f", "\x85"]
# Every JobSpec field that holds text (str, optional str or a tuple of str): each is an option of `render`.
TEXT_FIELDS = [f.name for f in dataclasses.fields(jobs.JobSpec) if "str" in str(f.type)]
# Values valid apart from the control character, so that only that can be what is refused.
VALID_TEXT = {"template": "analysis", "time": "1:00:00", "launcher": "srun", "schedule": "static"}


@pytest.mark.parametrize("control", CONTROL)
@pytest.mark.parametrize("name", TEXT_FIELDS)
def test_control_characters_are_refused_naming_the_option(name, control):
    value = VALID_TEXT.get(name, "x") + control
    values = {
        "template": "analysis",
        "store": "all.h5",
        name: (value,) if name in ("setup", "run_args") else value,
    }
    with pytest.raises(ParameterError, match=rf"^{name} must be text without control characters .*; got "):
        jobs.JobSpec(**values)


def test_text_fields_cover_the_options_of_a_script():
    """The list above is not empty by accident: it holds the options a job script is made of."""
    assert {"output", "python", "run_args", "plots", "structures", "setup", "job_name", "time"} <= set(
        TEXT_FIELDS
    )


# Shell and Slurm metacharacters: command substitution both ways, separators, quotes, spaces, globs.
HOSTILE_WORDS = (
    "$(touch PWNED)",
    "`touch PWNED`",
    "x;touch PWNED",
    "x&&touch PWNED",
    "x|y",
    "it's",
    'say "x"',
    "two words",
    "x\\y",
    "#x",
    "*",
    "[a]?",
    "x,y=@",
)
# Values on #SBATCH lines (sbatch parses them, not bash) and bare words: a strict character set instead.
STRICT = {
    "job_name": "sporep",
    "partition": "batch",
    "account": "proj-1",
    "qos": "normal",
    "constraint": "skylake",
    "mem_per_cpu": "4G",
    "time": "1:00:00",
    "fingerprint": "kinetic",
    "merge_pattern": "chunk-*.h5",
}


@pytest.mark.parametrize(
    ("name", "word"),
    [
        (name, word)
        for name in STRICT
        for word in HOSTILE_WORDS
        # what each value legitimately holds: Slurm words hold , = @; the merge pattern is a glob
        if not (name in ("partition", "account", "qos", "constraint") and word == "x,y=@")
        and not (name == "merge_pattern" and word in ("*", "[a]?"))
    ],
)
def test_strict_values_refuse_shell_characters(name, word):
    values = {"template": "analysis", "store": "all.h5", **STRICT, name: word}
    with pytest.raises(ParameterError, match=rf"^{name} must be .*; got {re.escape(repr(word))}$"):
        jobs.JobSpec(**values)


@pytest.mark.parametrize("text", ["\u0661:00", " 1:00:00", "1:00:00 ", "1:00:00#"])
def test_time_is_ascii_digits_only(text):
    """sbatch reads --time itself: Unicode digits or padding that Python's int() accepts are refused."""
    with pytest.raises(ParameterError, match=r"time must be a Slurm time limit"):
        jobs.JobSpec("single-node", structures="l", time=text)


def test_spec_template_specific_checks():
    with pytest.raises(
        ParameterError, match=r"ranks must be a multiple of nodes \(4\) for 'multi-node'; got 10"
    ):
        jobs.JobSpec("multi-node", structures="l", ranks=10, nodes=4)
    with pytest.raises(ParameterError, match=r"ranks must be >= nodes \(4\); got 2"):
        jobs.JobSpec("multi-node", structures="l", ranks=2, nodes=4)
    with pytest.raises(ParameterError, match=r"time must be longer than signal_seconds \+ 60 s = 360 s"):
        jobs.JobSpec("restart", structures="l", time="5")
    with pytest.raises(ParameterError, match=r"signal_seconds must be an integer in \[60, 65535\] s; got 10"):
        jobs.JobSpec("restart", structures="l", signal_seconds=10)
    with pytest.raises(ParameterError, match=r"chunks must be an integer in \[1, inf\); got 0"):
        jobs.JobSpec("array", structures="l", chunks=0)
    with pytest.raises(ParameterError, match=r"store is required for template 'analysis'"):
        jobs.JobSpec("analysis")
    with pytest.raises(ParameterError, match=r"metric must be one of"):
        jobs.JobSpec("analysis", store="s.h5", metric="manhattan")
    with pytest.raises(ParameterError, match=r"template must be one of"):
        jobs.JobSpec("gpu", structures="l")


def test_check_paths(workdir):
    spec = jobs.JobSpec("single-node", structures="missing.txt")
    with pytest.raises(ParameterError, match=r"structures must be a readable list file; got 'missing.txt'"):
        jobs.check_paths(spec)
    (workdir / "bad.txt").write_text("a.cif\nnope.cif\nexamples:cnt\n")
    with pytest.raises(ParameterError, match=r"1 of 3 in 'bad.txt' do not exist: 'nope.cif'"):
        jobs.check_paths(jobs.JobSpec("single-node", structures="bad.txt"))
    (workdir / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(ParameterError, match=r"structures must list at least one entry"):
        jobs.check_paths(jobs.JobSpec("single-node", structures="empty.txt"))
    with pytest.raises(
        ParameterError, match=r"none in 'list.chunks'; run `sporep-hpc split list.txt --chunks 3"
    ):
        jobs.check_paths(jobs.JobSpec("array", structures="list.txt", chunks=3))
    _write_chunks(workdir / "list.chunks", [["a.cif"], ["c.cif"]])
    with pytest.raises(ParameterError, match=r"chunks must equal the number of chunk lists .* \(2\); got 3"):
        jobs.check_paths(jobs.JobSpec("array", structures="list.txt", chunks=3))
    filled = jobs.check_paths(jobs.JobSpec("array", structures="list.txt"))
    assert (filled.chunks, filled.chunk_dir) == (2, "list.chunks")
    (workdir / "list.chunks" / jobs.CHUNK_FORMAT.format(3)).write_text("a.cif\n")
    with pytest.raises(ParameterError, match=r"numbered 0..2 without gaps"):
        jobs.check_paths(jobs.JobSpec("array", structures="list.txt"))
    with pytest.raises(ParameterError, match=r"store must be an existing store \(or give merge_dir\)"):
        jobs.check_paths(jobs.JobSpec("analysis", store="none.h5"))
    with pytest.raises(ParameterError, match=r"labels must be an existing CSV file"):
        jobs.check_paths(jobs.JobSpec("analysis", store="x.h5", merge_dir=".", labels="none.csv"))
    with pytest.raises(ParameterError, match=r"manifest must be the split.json of `sporep-hpc split`"):
        jobs.check_paths(jobs.JobSpec("analysis", store="x.h5", merge_dir="later", manifest="none.json"))
    # the directory of chunk stores is made by the array job the analysis waits for: it may not exist yet
    assert jobs.check_paths(jobs.JobSpec("analysis", store="x.h5", merge_dir="later")).merge_dir == "later"


def test_read_list_matches_bash(workdir, tmp_path):
    """The Python reader and the templates' bash `read_list` agree on entries (spaces kept inside)."""
    script = jobs._READ_LIST + '\nread_list "$1" E\nprintf "%s\\n" "${E[@]}"\n'
    out = subprocess.run([BASH, "-c", script, "bash", "list.txt"], capture_output=True, text=True, check=True)
    assert (
        out.stdout.splitlines()
        == jobs.read_list("list.txt")
        == ["a.cif", "b cif.cif", "c.cif", "examples:batio3"]
    )


# --- rendering -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(jobs.TEMPLATES))
def test_every_template_renders_and_passes_bash_n(name, tmp_path):
    text = jobs.render_example(name)
    assert "{{" not in text and "}}" not in text
    assert text.startswith("#!/bin/bash\n")
    _bash_n(text, tmp_path, f"{name}.sbatch")
    # conventional headers a cluster user expects
    for option in ("--job-name=", "--time=", "--cpus-per-task=", "--output="):
        assert f"#SBATCH {option}" in text
    # all #SBATCH lines come before the first command (sbatch stops reading them there)
    lines = text.splitlines()
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))


def test_full_option_render_passes_bash_n(workdir, tmp_path):
    _write_chunks(workdir / "list.chunks", [["a.cif"], ["c.cif"]])
    (workdir / "labels.csv").write_text("id,label\n")
    common = dict(
        partition="batch",
        account="proj-1",
        qos="normal",
        constraint="skylake",
        mem_per_cpu="4G",
        setup=("module load mpich", "source /opt/venv/bin/activate"),
        python="/usr/bin/env",
    )
    specs = [
        jobs.JobSpec(
            "single-node",
            structures="list.txt",
            ranks=4,
            threads=2,
            run_args=("--kdensity", "0.2"),
            schedule="static",
            launcher="mpirun",
            **common,
        ),
        jobs.JobSpec("multi-node", structures="list.txt", ranks=8, nodes=2, time="1-0", **common),
        jobs.JobSpec("array", structures="list.txt", output="out dir", max_parallel=2, **common),
        jobs.JobSpec(
            "restart", structures="list.txt", time="2:00:00", signal_seconds=600, max_restarts=3, **common
        ),
        jobs.JobSpec(
            "analysis",
            store="all.h5",
            merge_dir=".",
            labels="labels.csv",
            metric="wasserstein",
            ranks=2,
            **common,
        ),
    ]
    for spec in specs:
        text = jobs.render(spec)
        _bash_n(text, tmp_path, f"{spec.template}-full.sbatch")
        for line in (
            "#SBATCH --partition=batch",
            "#SBATCH --account=proj-1",
            "#SBATCH --qos=normal",
            "#SBATCH --constraint=skylake",
            "#SBATCH --mem-per-cpu=4G",
            "module load mpich",
        ):
            assert line in text.splitlines()
    assert _sbatch(jobs.render(specs[2]), "array") == "0-1%2"
    assert _sbatch(jobs.render(specs[3]), "signal") == "B:USR1@600"
    assert _sbatch(jobs.render(specs[1]), "ntasks-per-node") == "4"
    assert _sbatch(jobs.render(specs[1]), "nodes") == "2"


def test_jobs_dir_is_generated_from_the_templates():
    """jobs/*.sbatch are the example renderings, (regenerate: sporep-hpc jobs examples jobs/)."""
    for name in jobs.TEMPLATES:
        copy = REPO / "jobs" / f"{name}.sbatch"
        assert copy.is_file(), f"{copy} missing: run `sporep-hpc jobs examples jobs/`"
        assert copy.read_text() == jobs.render_example(name), f"{copy} differs from its template"


def test_command_line_reproduces_the_spec(workdir, capsys):
    spec = jobs.JobSpec(
        "single-node",
        structures="list.txt",
        ranks=6,
        threads=3,
        time="2:00:00",
        run_args=("--kdensity", "0.2", "--config", "my run.toml"),
        schedule="static",
        setup=("module load x",),
        python="/usr/bin/env",
    )
    args = shlex.split(spec.command_line())
    assert args[:3] == ["sporep-hpc", "jobs", "render"]
    assert main([*args[1:], "--script", "again.sbatch"]) == 0
    assert (workdir / "again.sbatch").read_text() == jobs.render(spec, script="again.sbatch")


# --- running the rendered scripts with fake Slurm tools ------------------------------------------------


def _run(script: Path, env: dict, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BASH, str(script)], env={**env, **extra}, capture_output=True, text=True, timeout=60
    )


def test_single_node_script_runs_the_listed_inputs(workdir, fake_env):
    env, _, log = fake_env
    spec = jobs.JobSpec(
        "single-node",
        structures="list.txt",
        output="out/store.h5",
        ranks=2,
        python="python",
        run_args=("--kdensity", "0.2"),
    )
    script = workdir / "job.sbatch"
    script.write_text(jobs.render(spec))
    res = _run(script, env, SLURM_CPUS_PER_TASK="3", SLURM_NTASKS="2")
    assert res.returncode == 0, res.stderr
    (argv,) = _calls(log, "srun")
    expected = [
        "--kill-on-bad-exit=1",
        "python",
        "-m",
        "mpi4py",
        "-m",
        "sporep_hpc",
        "run",
        "a.cif",
        "b cif.cif",
        "c.cif",
        "examples:batio3",
        "-o",
        str(workdir / "out/store.h5"),
        "--schedule",
        "dynamic",
        "--kdensity",
        "0.2",
    ]
    assert argv == expected
    assert (workdir / "out").is_dir()
    assert "2 ranks x 3 threads" in res.stdout


@pytest.mark.parametrize(("rc", "expected"), [(0, 0), (4, 0), (5, 5), (3, 3), (1, 1)])
def test_exit_codes_of_run_map_to_job_state(workdir, fake_env, rc, expected):
    """4 (some structures failed) completes the job; 5 (stopped by a signal) and errors do not."""
    env, _, _ = fake_env
    script = workdir / "job.sbatch"
    script.write_text(jobs.render(jobs.JobSpec("single-node", structures="list.txt", python="python")))
    assert _run(script, env, FAKE_RC=str(rc)).returncode == expected


def test_threads_come_from_slurm_cpus_per_task(workdir, fake_env):
    env, bindir, log = fake_env
    _install(
        bindir,
        "srun",
        '#!/bin/bash\necho "$OMP_NUM_THREADS $OPENBLAS_NUM_THREADS $MKL_NUM_THREADS '
        '$SRUN_CPUS_PER_TASK" > "$FAKE_LOG/threads"\n',
    )
    script = workdir / "job.sbatch"
    script.write_text(
        jobs.render(jobs.JobSpec("single-node", structures="list.txt", python="python", threads=4))
    )
    assert _run(script, env, SLURM_CPUS_PER_TASK="4", OMP_NUM_THREADS="99").returncode == 0
    assert (log / "threads").read_text().split() == ["4", "4", "4", "4"]


def test_array_task_processes_its_chunk(workdir, fake_env):
    env, _, log = fake_env
    chunks = [["a.cif", "examples:batio3"], ["b cif.cif"], ["c.cif"]]
    _write_chunks(workdir / "list.chunks", chunks)
    spec = jobs.JobSpec("array", structures="list.txt", output="stores", ranks=2, python="python")
    script = workdir / "array.sbatch"
    script.write_text(jobs.render(spec))
    assert _sbatch(script.read_text(), "array") == "0-2"
    for task in (1, 0, 2):
        res = _run(script, env, SLURM_ARRAY_TASK_ID=str(task))
        assert res.returncode == 0, res.stderr
    calls = _calls(log, "srun")
    for argv, task in zip(calls, (1, 0, 2), strict=True):
        head = ["--kill-on-bad-exit=1", "python", "-m", "mpi4py", "-m", "sporep_hpc", "run"]
        out = str(workdir / "stores" / f"chunk-{task:04d}.h5")
        assert argv == [*head, *chunks[task], "-o", out, "--schedule", "dynamic"]


def test_array_task_errors(workdir, fake_env):
    env, _, log = fake_env
    _write_chunks(workdir / "list.chunks", [["a.cif"], ["c.cif"]])
    script = workdir / "array.sbatch"
    script.write_text(jobs.render(jobs.JobSpec("array", structures="list.txt", python="python")))
    res = _run(script, env, SLURM_ARRAY_TASK_ID="7")
    assert res.returncode == 2 and "chunk-0007.txt not found" in res.stderr
    res = _run(script, env)
    assert res.returncode != 0 and "submit it with sbatch" in res.stderr
    assert _calls(log, "srun") == []


def test_analysis_script_merges_then_analyses(workdir, fake_env):
    env, bindir, log = fake_env
    chunk_dir = workdir / "stores"
    chunk_dir.mkdir()
    for i in (1, 0, 2):
        (chunk_dir / f"chunk-{i:04d}.h5").write_text("")
    (workdir / "labels.csv").write_text("id,label\n")
    (workdir / "split.json").write_text("{}")
    spec = jobs.JobSpec(
        "analysis",
        store="all.h5",
        merge_dir="stores",
        manifest="split.json",
        labels="labels.csv",
        python=str(bindir / "python"),
        metric="tanimoto",
        fingerprint="kinetic",
    )
    script = workdir / "analysis.sbatch"
    script.write_text(jobs.render(spec))
    res = _run(script, env)
    assert res.returncode == 0, res.stderr
    merge, similarity = _calls(log, "srun")
    store = str(workdir / "all.h5")
    assert merge[merge.index("merge") :] == [
        "merge",
        *(str(chunk_dir / f"chunk-{i:04d}.h5") for i in range(3)),
        "-o",
        store,
        "--manifest",
        str(workdir / "split.json"),
    ]
    assert similarity[similarity.index("similarity") :] == [
        "similarity",
        store,
        "--fingerprint",
        "kinetic",
        "--metric",
        "tanimoto",
        "--plots",
        str(workdir / "figures"),
    ]
    (classify,) = _calls(log, "python")
    assert classify == [
        "-m",
        "sporep_hpc",
        "classify",
        store,
        "--labels",
        str(workdir / "labels.csv"),
        "--plots",
        str(workdir / "figures"),
    ]
    # a second attempt finds the merged store and does not merge again
    (workdir / "all.h5").write_text("")
    res = _run(script, env)
    assert res.returncode == 0 and "not merging again" in res.stdout
    assert [c[c.index("sporep_hpc") + 1] for c in _calls(log, "srun")] == [
        "merge",
        "similarity",
        "similarity",
    ]


def _start_restart_job(workdir: Path, env: dict, restart_count: int, max_restarts: int = 2):
    spec = jobs.JobSpec("restart", structures="list.txt", python="python", max_restarts=max_restarts)
    script = workdir / "restart.sbatch"
    script.write_text(jobs.render(spec))
    extra = {"SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": str(restart_count)}
    return subprocess.Popen(
        [BASH, str(script)], env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.parametrize(("restart_count", "requeued", "rc"), [(0, True, 0), (2, False, 5)])
def test_restart_script_forwards_usr1_and_requeues(workdir, fake_env, restart_count, requeued, rc):
    """SIGUSR1 to the batch shell (what --signal=B:USR1@300 does) reaches the step; exit 5 -> requeue."""
    env, bindir, log = fake_env
    _install(bindir, "srun", FAKE_PREEMPTIBLE_SRUN)
    proc = _start_restart_job(workdir, env, restart_count)
    _wait_for(log / "srun.started")
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == rc, (out, err)
    assert (log / "srun.signal").read_text() == "usr1\n"
    assert _calls(log, "scontrol") == ([["requeue", "4242"]] if requeued else [])
    assert ("requeueing job 4242" in out) == requeued


def test_restart_script_finishes_without_requeue(workdir, fake_env):
    env, _, log = fake_env
    proc = _start_restart_job(workdir, env, 0)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sporep-hpc: done" in out
    assert _calls(log, "scontrol") == []


# A file-name component that breaks a script which pastes it unquoted or inside double quotes.
HOSTILE_NAME = "h $(touch PWNED) `touch PWNED` ;touch PWNED 'q' \"d\" \\ *?[a]"
# How each launcher is called by the templates (SLURM_NTASKS=2 in the run below).
LAUNCH_ARGS = {"srun": ["--kill-on-bad-exit=1"], "mpirun": ["-n", "2"], "mpiexec": ["-n", "2"]}


def _hostile_job(template: str, launcher: str, workdir: Path, bindir: Path) -> tuple[jobs.JobSpec, dict]:
    """A spec whose every file, directory, interpreter and run argument is hostile, the files it names,
    and the argv each fake tool must receive (built from the names, not from the renderer)."""
    h = HOSTILE_NAME
    entries = [f"{h}.cif", "a.cif"]
    for entry in entries:
        (workdir / entry).write_text("data_x\n")
    (workdir / f"{h}.txt").write_text("".join(e + "\n" for e in entries))
    python = _install(bindir, f"python {h}", _fake_tool("python"))
    head = [*LAUNCH_ARGS[launcher], str(python), "-m", "mpi4py", "-m", "sporep_hpc"]
    common = dict(launcher=launcher, python=str(python), ranks=2, time="2:00:00", run_args=HOSTILE_WORDS)
    tail = ["--schedule", "dynamic", *HOSTILE_WORDS]
    if template == "analysis":
        merge_dir = workdir / f"{h} chunks"
        merge_dir.mkdir()
        stores = [merge_dir / f"chunk-{i:04d}.h5" for i in range(2)]
        for path in [*stores, workdir / f"{h}.json", workdir / f"{h}.csv"]:
            path.write_text("")
        store, plots = str(workdir / f"{h}.h5"), str(workdir / f"{h} figures")
        spec = jobs.JobSpec(
            template,
            store=f"{h}.h5",
            merge_dir=f"{h} chunks",
            manifest=f"{h}.json",
            labels=f"{h}.csv",
            plots=f"{h} figures",
            **common,
        )
        manifest, labels = str(workdir / f"{h}.json"), str(workdir / f"{h}.csv")
        merge = [*head, "merge", *map(str, stores), "-o", store, "--manifest", manifest]
        metric = ["--fingerprint", "kinetic", "--metric", "cosine", "--plots", plots]
        classify = ["-m", "sporep_hpc", "classify", store, "--labels", labels, "--plots", plots]
        return spec, {launcher: [merge, [*head, "similarity", store, *metric]], "python": [classify]}
    if template == "array":
        _write_chunks(workdir / f"{h}.chunks", [entries[:1], entries[1:]])
        spec = jobs.JobSpec(template, structures=f"{h}.txt", output=f"{h} stores", **common)
        output = str(workdir / f"{h} stores" / "chunk-0000.h5")
        return spec, {launcher: [[*head, "run", entries[0], "-o", output, *tail]]}
    nodes = 2 if template == "multi-node" else 1
    spec = jobs.JobSpec(template, structures=f"{h}.txt", output=f"{h}/store {h}.h5", nodes=nodes, **common)
    output = str(workdir / h / f"store {h}.h5")
    return spec, {launcher: [[*head, "run", *entries, "-o", output, *tail]]}


@pytest.mark.parametrize("launcher", jobs.LAUNCHERS)
@pytest.mark.parametrize("template", sorted(jobs.TEMPLATES))
def test_hostile_values_reach_the_tools_verbatim_and_never_run(template, launcher, workdir, fake_env):
    """Every file, directory, the interpreter, the script name and every run argument carry $(...),
    backticks, ;, quotes, a backslash, spaces and glob characters; bash runs the script with fake tools.
    Nothing injected runs (no PWNED file) and each tool gets each value as one argument, unchanged."""
    env, bindir, log = fake_env
    spec, expected = _hostile_job(template, launcher, workdir, bindir)
    name = f"{HOSTILE_NAME}.sbatch"
    text = jobs.render(spec, script=name)
    script = workdir / name
    script.write_text(text)
    res = _run(script, env, SLURM_NTASKS="2", SLURM_JOB_ID="4242", SLURM_ARRAY_TASK_ID="0")
    assert res.returncode == 0, res.stderr
    assert list(workdir.rglob("PWNED")) == []
    calls = {tool: _calls(log, tool) for tool in FAKE_TOOLS}
    assert calls == {tool: expected.get(tool, []) for tool in FAKE_TOOLS}
    # the submit hint in the comments can be pasted: the script name is one word
    submit = next(x for x in text.splitlines() if x.startswith("# Submit"))
    assert shlex.split(submit.split("sbatch", 1)[1])[-1] == name
    # the provenance comment is one line that renders the same script again
    (line,) = [x for x in text.splitlines() if x.startswith("# Rendered by: ")]
    argv = shlex.split(line.removeprefix("# Rendered by: "))
    again = f"again {HOSTILE_NAME}"
    assert main([*argv[1:], "--script", again]) == 0
    assert (workdir / again).read_text() == jobs.render(spec, script=again)


def test_array_hint_for_a_missing_chunk_is_quoted(workdir, fake_env):
    """The hint printed for a missing chunk names the hostile list without running any of it."""
    env, bindir, log = fake_env
    spec, _ = _hostile_job("array", "srun", workdir, bindir)
    script = workdir / "array.sbatch"
    script.write_text(jobs.render(spec))
    res = _run(script, env, SLURM_ARRAY_TASK_ID="7")
    assert res.returncode == 2 and "chunk-0007.txt not found" in res.stderr
    assert list(workdir.rglob("PWNED")) == []
    (hint,) = re.findall(r"not found: run `(.*)` first$", res.stderr, flags=re.MULTILINE)
    structures, chunk_dir = str(workdir / f"{HOSTILE_NAME}.txt"), str(workdir / f"{HOSTILE_NAME}.chunks")
    assert shlex.split(hint) == ["sporep-hpc", "split", structures, "--chunks", "2", "-o", chunk_dir]
    assert _calls(log, "srun") == []
    # so is the hint of `jobs render` when the chunks are not there yet
    with pytest.raises(ParameterError, match=r"none in 'no chunks'") as refused:
        jobs.check_paths(dataclasses.replace(spec, chunk_dir="no chunks"))
    (hint,) = re.findall(r"run `(.*)` first$", str(refused.value))
    assert shlex.split(hint) == [
        "sporep-hpc",
        "split",
        f"{HOSTILE_NAME}.txt",
        "--chunks",
        "N",
        "-o",
        "no chunks",
    ]


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_list_and_dry_run(workdir, capsys):
    assert main(["jobs", "list"]) == 0
    listed = capsys.readouterr().out.split()
    assert all(name in listed for name in jobs.TEMPLATES)
    _write_chunks(workdir / "list.chunks", [["a.cif"], ["c.cif", "b cif.cif"], ["examples:batio3"]])
    argv = [
        "jobs",
        "render",
        "array",
        "--structures",
        "list.txt",
        "--ranks",
        "4",
        "--threads",
        "2",
        "--time",
        "1-12",
        "--dry-run",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # 3 tasks x 4 ranks x 2 threads x 36 h = 864 core-hours (by hand)
    assert "at most 864.0 core-hours (3 array tasks)" in out
    assert "3 lists in list.chunks, 1-2 entries each" in out
    assert not (workdir / "array.sbatch").exists()


def test_cli_render_writes_script_and_rejects_bad_values(workdir, capsys):
    assert (
        main(
            [
                "jobs",
                "render",
                "restart",
                "--structures",
                "list.txt",
                "--ranks",
                "128",
                "--time",
                "4:00:00",
                "--script",
                "r.sbatch",
            ]
        )
        == 0
    )
    text = (workdir / "r.sbatch").read_text()
    assert _sbatch(text, "ntasks") == "128"
    assert _sbatch(text, "signal") == "B:USR1@300"
    assert os.access(workdir / "r.sbatch", os.X_OK)
    assert main(["jobs", "render", "single-node", "--structures", "list.txt", "--ranks", "0"]) == 2
    assert "ranks must be an integer in [1, inf); got 0" in capsys.readouterr().err
    assert main(["jobs", "render", "single-node", "--structures", "list.txt", "--time", "1:99"]) == 2
    assert main(["jobs", "render", "single-node", "--structures", "missing.txt"]) == 2


@pytest.mark.parametrize(
    "option",
    ["--output", "--python", "--run-args", "--plots", "--structures", "--setup", "--job-name", "--time"],
)
def test_cli_refuses_control_characters_with_exit_2(option, workdir, capsys):
    argv = ["jobs", "render", "analysis", "--store", "x.h5", "--merge-dir", "d", "--no-check"]
    assert main([*argv, option, "x\ntouch PWNED #", "--script", "job.sbatch"]) == 2
    name = option[2:].replace("-", "_")
    assert f"{name} must be text without control characters" in capsys.readouterr().err
    assert not (workdir / "job.sbatch").exists()


def test_cli_refuses_bad_script_name_and_unbalanced_run_args(workdir, capsys):
    argv = ["jobs", "render", "single-node", "--structures", "list.txt"]
    assert main([*argv, "--script", "job\rtouch PWNED.sbatch"]) == 2
    assert "script must be text without control characters" in capsys.readouterr().err
    assert main([*argv, "--run-args", "--config 'my run.toml"]) == 2
    assert "run_args must be shell words with balanced quotes" in capsys.readouterr().err
