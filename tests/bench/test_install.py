"""bench.install's report and its refusal without make; the clone-and-install run itself is
`make install-times` (minutes of pip, so not a test)."""

from __future__ import annotations

from bench import install


def test_minutes_reads_as_a_person_would() -> None:
    assert install.minutes(50.4) == "50 s"
    assert install.minutes(61.2) == "1 min 1 s"
    assert install.minutes(181) == "3 min 1 s"


def test_the_table_adds_up_and_names_each_step() -> None:
    result = {
        "commit": "abc1234",
        "cpus": 2,
        "loadavg_before": [0.5, 0.4, 0.3],
        "serving": {"install_s": 52.0, "start_s": 6.5, "total_s": 58.5, "venv_mib": 865},
        "dev": {"install_s": 241.0, "venv_mib": 7035},
    }
    text = install.markdown(result)
    assert "| `make api` from a fresh clone: pip, serving set | 52 s | 865 MiB |" in text
    assert "| **fresh clone to a serving API** | **58 s** |" in text
    assert "| `make venv`: the development set added | 4 min 1 s | 7,035 MiB in all |" in text
    assert "commit abc1234" in text
    del result["dev"]
    assert "development set" not in install.markdown(result)


def test_without_make_it_says_what_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    assert install.main([]) == 2
    assert "apt install make git" in capsys.readouterr().err
