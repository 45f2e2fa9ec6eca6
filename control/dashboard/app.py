"""The dashboard's aiohttp application, mounted by the control API at ``/dashboard``."""

from __future__ import annotations

from aiohttp import web

from control.dashboard import (
    actions,
    app_page,
    confirm,
    connect,
    deploy,
    live_views,
    pages,
    review_board,
)
from control.dashboard import web as signin
from control.dashboard.html import ROOT
from control.dashboard.web import DASHBOARD, Dashboard, guard

__all__ = ["ROOT", "Dashboard", "build_dashboard"]


def build_dashboard(dash: Dashboard) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[DASHBOARD] = dash
    modules = (signin, pages, app_page, confirm, actions, deploy, live_views, review_board, connect)
    for module in modules:
        module.register(app)
    return app
