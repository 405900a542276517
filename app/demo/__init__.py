"""The demo page: a publisher's story page whose "Related articles" box is fed by the public API."""
