from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from backoffice import views
from backoffice.fleet import views as fleet
from backoffice.members import views as members
from backoffice.reports import views as reports

urlpatterns = [
    path("", views.home, name="home"),
    path("members/<str:account>/", members.member_page, name="member"),
    path("members/<str:account>/topup", members.top_up, name="member-topup"),
    path("members/<str:account>/link", members.link_card, name="member-link"),
    path("members/<str:account>/refund", members.refund, name="member-refund"),
    path("cards/<str:ref>/<str:move>", members.card_move, name="card-move"),
    path("codes/", members.codes, name="codes"),
    path("batch/topup/", members.batch_top_up, name="batch-topup"),
    path("fleet/", fleet.kiosks, name="fleet"),
    path("reports/", reports.report_page, name="reports"),
    path("api/", include("backoffice.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

handler403 = "backoffice.views.forbidden"
