"""The command line: reference data, demo data and user management."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kim_admin.demo import DEMO_DOMAIN, DEMO_PASSWORD
from kim_admin.extensions import db
from kim_admin.reference import MUNICIPALITIES
from models import Indicator, MonitoringEntry, Municipality, TargetGroup, User

from .conftest import app_on, build_image
from .support import Session

# DOMAIN.md §3, written out again here so that a typo in the seed cannot pass.
HSK = {
    "05958004": ("Arnsberg", 74300, True),
    "05958008": ("Bestwig", 10720, True),
    "05958012": ("Brilon", 25583, False),
    "05958016": ("Eslohe (Sauerland)", 8917, False),
    "05958020": ("Hallenberg", 4539, True),
    "05958024": ("Marsberg", 19718, False),
    "05958028": ("Medebach", 8157, True),
    "05958032": ("Meschede", 29957, True),
    "05958036": ("Olsberg", 14510, False),
    "05958040": ("Schmallenberg", 24951, True),
    "05958044": ("Sundern (Sauerland)", 27751, True),
    "05958048": ("Winterberg", 12674, False),
}


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="module")
def demo_image(database, reference_image, tmp_path_factory):
    """The database after ``flask demo seed`` (seconds of work), and what it printed."""
    results = []

    def seed(app):
        results.append(app.test_cli_runner().invoke(args=["demo", "seed"]))

    image = build_image(database, reference_image, "demo", seed, tmp_path_factory.mktemp("demo"))
    return image, results[0]


@pytest.fixture
def seeded(database, demo_image, tmp_path):
    """A fresh app on a fresh copy of the seeded demo database."""
    with app_on(database, demo_image[0], tmp_path) as app:
        yield app


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_reference_load_is_idempotent(app, runner):
    result = runner.invoke(args=["reference", "load"])
    assert result.exit_code == 0, result.output
    assert "0 Kommunen" in result.output
    with app.app_context():
        rows = {
            m.ags: (m.name, m.population, m.kim_participant)
            for m in db.session.scalars(select(Municipality))
        }
    assert rows == HSK
    # The towns add up to the district total of 261,777 inhabitants.
    assert sum(population for _, _, population, _ in MUNICIPALITIES) == 261_777
    assert _count(app, TargetGroup) == 11
    with app.app_context():
        codes = set(db.session.scalars(select(Indicator.code)))
    assert codes == {"CM_NEU", "CM_ABG", "CM_AKT", "BER_KONT", "VERM", "FALLKONF", "VZAE_BES"}


def test_reference_load_keeps_participation_decision(app, runner):
    with app.app_context():
        brilon = db.session.scalar(select(Municipality).where(Municipality.name == "Brilon"))
        brilon.kim_participant = True
        db.session.commit()
    runner.invoke(args=["reference", "load"])
    with app.app_context():
        assert db.session.scalar(
            select(Municipality.kim_participant).where(Municipality.name == "Brilon")
        )


def test_demo_seed(seeded, demo_image):
    result = demo_image[1]
    assert result.exit_code == 0, result.output
    assert DEMO_PASSWORD in result.output
    assert "arnsberg@" in result.output and "meschede@" in result.output
    with seeded.app_context():
        roles = {u.role for u in db.session.scalars(select(User))}
        towns = {u.municipality.name for u in db.session.scalars(select(User)) if u.municipality}
        periods = db.session.scalar(select(func.count(func.distinct(MonitoringEntry.period_id))))
    assert roles == {"district_admin", "municipal_staff", "steering_group"}
    assert {"Arnsberg", "Meschede"} <= towns
    assert periods == 8  # two years of quarters
    assert _count(seeded, MonitoringEntry) > 1000


def test_demo_users_can_log_in(seeded):
    session = Session(seeded.test_client())
    assert session.login(f"kreis@{DEMO_DOMAIN}", DEMO_PASSWORD).status_code == 302
    assert session.get("/").status_code == 200


def test_demo_figures_consistent(seeded):
    """Active cases = previous active + new - closed, for every cell of the demo."""
    with seeded.app_context():
        rows = db.session.execute(
            select(
                MonitoringEntry.municipality_id,
                MonitoringEntry.target_group_id,
                MonitoringEntry.period_id,
                Indicator.code,
                MonitoringEntry.value,
            )
            .join(Indicator)
            .where(Indicator.code.in_(["CM_NEU", "CM_ABG", "CM_AKT"]))
        ).all()
    cells: dict = {}
    for town, group, period, code, value in rows:
        cells.setdefault((town, group), {}).setdefault(period, {})[code] = value
    checked = 0
    for series in cells.values():
        periods = sorted(series)
        for before, now in zip(periods, periods[1:], strict=False):
            a, b = series[before], series[now]
            assert b["CM_AKT"] == a["CM_AKT"] + b["CM_NEU"] - b["CM_ABG"]
            assert min(b.values()) >= 0
            checked += 1
    assert checked > 100


def test_demo_seed_refuses_non_empty_database(seeded):
    runner = seeded.test_cli_runner()
    before = _count(seeded, MonitoringEntry)
    result = runner.invoke(args=["demo", "seed"])
    assert result.exit_code != 0
    assert "--force" in result.output
    assert _count(seeded, MonitoringEntry) == before

    skipped = runner.invoke(args=["demo", "seed", "--if-empty"])
    assert skipped.exit_code == 0 and "keine Demo-Daten geladen" in skipped.output

    forced = runner.invoke(args=["demo", "seed", "--force"])
    assert forced.exit_code == 0, forced.output
    assert _count(seeded, MonitoringEntry) == before


def test_users_create_and_login(app, runner):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "Neu@Test.Example",
            "--role",
            "municipal_staff",
            "--municipality",
            "05958032",
            "--password-stdin",
        ],
        input="ein-langes-passwort\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == "neu@test.example"))
        assert user.municipality.name == "Meschede"
        assert user.check_password("ein-langes-passwort")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["kein-at", "--role", "steering_group"], "Ungültige E-Mail-Adresse"),
        (["a@test.example", "--role", "municipal_staff"], "braucht eine Kommune"),
        (
            ["a@test.example", "--role", "municipal_staff", "--municipality", "99999999"],
            "Keine Kommune",
        ),
    ],
)
def test_users_create_refuses_bad_input(app, runner, args, message):
    result = runner.invoke(
        args=["users", "create", *args, "--password-stdin"], input="ein-langes-passwort\n"
    )
    assert result.exit_code != 0
    assert message in result.output
    assert _count(app, User) == 0


def test_users_create_refuses_short_password(app, runner):
    result = runner.invoke(
        args=["users", "create", "a@test.example", "--role", "steering_group", "--password-stdin"],
        input="kurz\n",
    )
    assert result.exit_code != 0 and "mindestens 10 Zeichen" in result.output


def test_set_password_and_deactivate(app, runner, accounts):
    result = runner.invoke(
        args=["users", "set-password", accounts.steering, "--password-stdin"],
        input="ganz-neues-passwort\n",
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "deactivate", accounts.steering])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == accounts.steering))
        assert user.check_password("ganz-neues-passwort") and not user.active
    missing = runner.invoke(args=["users", "deactivate", "nix@test.example"])
    assert missing.exit_code != 0 and "Kein Benutzer" in missing.output
