// Chirp's composer, for every <textarea data-max-characters="N">: a live count of what is
// left of N, and Ctrl+Enter (⌘+Enter on a Mac) to post. A file of ours, loaded under the
// Content-Security-Policy (no inline script); without JavaScript the form works as before.
//
// It counts exactly as the server does (models.normalize_text and count_characters):
// line breaks as LF, Unicode NFC, ECMAScript trim(), then code points, so an emoji
// counts 1 and "0 left" is precisely what the server accepts.
(function () {
  "use strict";

  function countCharacters(value) {
    const text = value.replace(/\r\n?/g, "\n").normalize("NFC").trim();
    return Array.from(text).length;
  }

  function setUp(area) {
    const max = Number(area.dataset.maxCharacters);
    const counter = document.createElement("small");
    counter.className = "counter";
    counter.id = (area.id || "content") + "-counter";
    counter.setAttribute("aria-live", "polite");
    area.insertAdjacentElement("afterend", counter);
    const described = area.getAttribute("aria-describedby");
    area.setAttribute("aria-describedby", described ? described + " " + counter.id : counter.id);

    function update() {
      const left = max - countCharacters(area.value);
      counter.textContent = left === 1 || left === -1 ? left + " character left" : left + " characters left";
      counter.classList.toggle("over", left < 0);
      counter.dataset.left = String(left);
    }

    area.addEventListener("input", update);
    area.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && area.form) {
        event.preventDefault();
        area.form.requestSubmit();
      }
    });
    update();
  }

  document.querySelectorAll("textarea[data-max-characters]").forEach(setUp);
})();
