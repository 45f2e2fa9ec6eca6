from django.db import models


class Visit(models.Model):
    when = models.DateTimeField(auto_now_add=True)
