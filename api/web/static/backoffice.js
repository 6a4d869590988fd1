// The back office's only script of its own: copy buttons. Loaded from a file (the
// Content-Security-Policy allows no inline script). Pages work without it.
"use strict";
document.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = button.dataset.copied || "Copied";
  });
});
