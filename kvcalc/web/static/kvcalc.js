// kvcalc web: hover text for chart points (data-tip), shipped inside the package; no network access.
(function () {
  "use strict";
  function tip() { return document.getElementById("tip"); }
  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-tip]") : null;
    var t = tip();
    if (!t) return;
    if (!el || !el.getAttribute("data-tip")) { t.hidden = true; return; }
    t.textContent = el.getAttribute("data-tip");
    t.hidden = false;
    t.style.left = (ev.clientX + 14) + "px";
    t.style.top = (ev.clientY + 12) + "px";
  });
  document.addEventListener("mousemove", function (ev) {
    var t = tip();
    if (t && !t.hidden) { t.style.left = (ev.clientX + 14) + "px"; t.style.top = (ev.clientY + 12) + "px"; }
  });
})();
