/* Chirp's admin behaviour, started from this file rather than inline scripts, so the
   admin runs under a strict Content-Security-Policy. Needs flask-peewee's admin.js
   (window.Admin), loaded before it; both are deferred, so the page is parsed. */
(function (A) {
  "use strict";

  // "Select all" checkbox of a model list.
  document.querySelectorAll("[data-check-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll("td input[type=checkbox][name=id]").forEach(function (cb) {
        cb.checked = box.checked;
      });
    });
  });

  // Filter rows of list and export pages.
  if (document.getElementById("filter-wrapper")) {
    new A.ModelAdminFilter().init();
  }

  // Foreign keys picked by username in add/edit forms (see form_raw_id.html).
  document.querySelectorAll("[data-raw-id-field]").forEach(function (marker) {
    var name = marker.dataset.rawIdField;
    if (document.getElementById(name)) {
      new A.ModelAdminRawIDField(name).init(marker.dataset.rawIdRepr || undefined);
    }
  });
})(window.Admin);
