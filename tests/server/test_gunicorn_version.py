"""The worker runs only under the gunicorn versions it was built for, and says so."""
import pytest

from getbatch.server.gunicorn_compat import GunicornVersionError, require_tested_gunicorn


def test_installed_gunicorn_is_admitted():
    require_tested_gunicorn()


@pytest.mark.parametrize("version", [(23, 0, 0), (26, 9, 9), (28, 0, 0)])
def test_other_versions_are_refused_with_what_to_install(version):
    with pytest.raises(GunicornVersionError, match=r"gunicorn>=27\.0,<28\.0"):
        require_tested_gunicorn(version)
