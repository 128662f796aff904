"""The v2 API on Ray Serve (`make api-ray`): Serve's proxy on every node, each request answered by
a `V2Ingress` replica with `make api`'s REST app; deployed from deploy/ray/serve.yaml."""
