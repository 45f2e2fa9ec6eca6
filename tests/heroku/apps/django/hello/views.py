from django.db import connection
from django.shortcuts import render

from hello.models import Visit


def index(request):
    Visit.objects.create()
    ssl = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ssl = cursor.fetchone()[0]
    context = {"visits": Visit.objects.count(), "vendor": connection.vendor, "ssl": ssl}
    return render(request, "hello/index.html", context)
