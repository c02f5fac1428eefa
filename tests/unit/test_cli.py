from zxmem.cli import command_modules


def test_ps_is_a_command():
    assert "ps" in command_modules()


def test_help_exits_zero(cli):
    r = cli(["ps", "--help"])
    assert r.status == 0
    assert "examples:" in r.stdout


def test_unknown_units_letter_is_usage_error(cli):
    r = cli(["ps", "--units=q"])
    assert r.status == 2
    assert r.stderr.count("\n") == 1
    assert "--units" in r.stderr


def test_bad_proc_root(cli, tmp_path):
    r = cli(["ps", "--proc-root", str(tmp_path / "missing")])
    assert r.status == 2
    assert "--proc-root" in r.stderr


def test_no_command_prints_usage_on_stderr(cli):
    r = cli([])
    assert r.status == 2
    assert r.stdout == ""
    assert "usage:" in r.stderr


def test_k_vmos_rejects_non_ascii_pid(cli):
    r = cli(["k", "vmos", "١٢"])
    assert r.status == 2
    assert "k vmos" in r.stderr
