"""The embeddable related box: ``/widget.js``, a web component any site can put on a page."""
