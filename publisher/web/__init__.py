"""The web room: public pages and endpoints, the editors' desk, auth, the server. Imports every room below."""
