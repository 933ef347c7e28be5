-- wrk script: POST the seed's example body, as JSON, on every request.
wrk.method = "POST"
wrk.body = "[0.1, 0.1]"
wrk.headers["Content-Type"] = "application/json"
