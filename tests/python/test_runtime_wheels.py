"""The runtime's wheel libraries, without Spark: a wheel (a zip) is
unpacked on sys.path and its console-script entry point is called with the
task's parameters."""
import os
import sys
import zipfile

RUNTIME = os.path.join(os.path.dirname(__file__), "..", "..", "internal", "pyruntime")
sys.path.insert(0, os.path.abspath(RUNTIME))

from tandem_runtime import task  # noqa: E402


def make_wheel(path, entry_module_body):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("wheeldemo/__init__.py", entry_module_body)
        z.writestr("wheeldemo-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: wheeldemo\nVersion: 0.1\n")
        z.writestr("wheeldemo-0.1.dist-info/entry_points.txt", "[console_scripts]\nwheel-main = wheeldemo:main\n")


def test_wheel_entry_point_gets_the_task_parameters(tmp_path, monkeypatch, capsys):
    whl = tmp_path / "wheeldemo-0.1-py3-none-any.whl"
    make_wheel(whl, "import sys\ndef main():\n    print('args', sys.argv[1:])\ndef other():\n    print('other', sys.argv[1:])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    paths = task.install_wheels({"wheels": [str(whl)]})
    assert [os.path.basename(p) for p in paths] == ["0-wheeldemo-0.1-py3-none-any.zip"]
    task.run_wheel({"package_name": "wheeldemo", "entry_point": "wheel-main", "args": ["a"], "named": {"day": "1"}})
    # Not a declared entry point: a function of the package.
    task.run_wheel({"package_name": "wheeldemo", "entry_point": "other", "args": ["b"]})
    out = capsys.readouterr().out
    assert "args ['a', '--day=1']" in out and "other ['b']" in out
