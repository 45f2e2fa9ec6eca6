"""A Flask app with an RQ worker, written as for Heroku: REDIS_URL from the Redis add-on."""

import json
import os

import tasks
from flask import Flask, jsonify
from redis import Redis
from rq import Queue
from rq.job import Job

app = Flask(__name__)
redis = Redis.from_url(os.environ["REDIS_URL"])
queue = Queue(connection=redis)


@app.get("/")
def index():
    return "flask_rq is up\n"


@app.post("/jobs/add/<int:a>/<int:b>")
def enqueue_add(a, b):
    return jsonify(id=queue.enqueue(tasks.add, a, b).id), 202


@app.post("/jobs/environment")
def enqueue_environment():
    return jsonify(id=queue.enqueue(tasks.environment).id), 202


@app.get("/jobs/<job_id>")
def job(job_id):
    found = Job.fetch(job_id, connection=redis)
    return jsonify(status=found.get_status(), result=found.return_value())


@app.get("/environment")
def environment():
    return jsonify(dict(os.environ))


@app.get("/environment/release")
def release_environment():
    return jsonify(json.loads(redis.get("release:environment") or "{}"))
