"""The config vars an app's add-ons give it: each one's ``NAME_URL``, plus a kind's aliases.

Clients find a search server by more than one name: searchkick and
elasticsearch-py read ``ELASTICSEARCH_URL``, the OpenSearch clients
``OPENSEARCH_URL``, code written for Heroku's Bonsai or SearchBox ``BONSAI_URL``
or ``SEARCHBOX_URL`` (the attachment those names imply, ``names.py``). A
search add-on therefore also sets the API names as aliases, which yield to
everything set on purpose: a config var of the app's own, another add-on's
``NAME_URL``, and an older search add-on's aliases (the first attached is the
one clients find, as the first database is ``DATABASE_URL``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from control.models import Addon

#: Service -> the config vars its add-ons also set, beside ``NAME_URL``.
ALIASES: dict[str, tuple[str, ...]] = {"search": ("ELASTICSEARCH_URL", "OPENSEARCH_URL")}


def config_vars(addon: Addon) -> list[str]:
    """Every var ``addon`` may set: its own first, then its aliases (for listings)."""
    own = addon.config_var
    return [own, *(var for var in ALIASES.get(addon.service, ()) if var != own)]


def addon_env(addons: Iterable[Addon], config: Mapping[str, str]) -> dict[str, str]:
    """What the add-ons put in the app's env over ``config`` (pure).

    ``{**config, **addon_env(addons, config)}`` is the app's env.
    """
    attached = sorted(addons, key=lambda a: (a.created_at, a.name))
    env: dict[str, str] = {}
    for addon in attached:
        for var in ALIASES.get(addon.service, ()):
            if var not in config:
                env.setdefault(var, addon.url)
    env.update({a.config_var: a.url for a in attached})
    return env
