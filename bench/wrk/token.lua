-- The business servers' hot path: GET /v1/apps/demo/access_token with the API key.
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
