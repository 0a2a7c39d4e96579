"""The REST endpoints: routes, admin, the OpenAPI docs behind auth, what they depend on (the
app context), and their JSON views."""
