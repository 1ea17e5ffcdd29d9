from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backoffice.api import views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("members/", views.Members.as_view()),
    path("members/<str:account>/", views.MemberDetail.as_view()),
    path("members/<str:account>/balances/", views.MemberBalances.as_view()),
    path("members/<str:account>/cards/", views.MemberCards.as_view()),
    path("members/<str:account>/topups/", views.TopUps.as_view()),
    path("cards/<str:ref>/status/", views.CardStatus.as_view()),
    path("refunds/", views.Refunds.as_view()),
    path("transactions/", views.Transactions.as_view()),
]
