// Live parts: an element with id="live" and data-live="1" is refreshed every 2 s from the same
// URL while it says so (anything still running); plain fetch, no framework.
(function () {
  const PERIOD_MS = 2000;
  async function refresh() {
    const live = document.getElementById("live");
    if (!live || live.dataset.live !== "1") return;
    try {
      const response = await fetch(window.location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" });
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("live");
        if (fresh) {
          const open = Array.from(live.querySelectorAll("details[open]")).map((d) => d.querySelector("summary")?.textContent);
          live.replaceWith(fresh);
          fresh.querySelectorAll("details").forEach((d) => {
            if (open.includes(d.querySelector("summary")?.textContent)) d.open = true;
          });
        }
      }
    } catch (e) { /* the console restarted: try again next time */ }
    setTimeout(refresh, PERIOD_MS);
  }
  document.addEventListener("DOMContentLoaded", () => setTimeout(refresh, PERIOD_MS));
})();
