// runway-archiver browse: the little the page needs a script for. Everything works without it,
// except copying a link with one click.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const said = document.querySelector(`[data-copied-for="${button.dataset.copy}"]`);
  try {
    await navigator.clipboard.writeText(field.value);
    said.textContent = "Link copied.";
  } catch (error) {
    field.focus();
    field.select(); // the user copies it with the keyboard
    said.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
  }
});

// A poster that does not load becomes the placeholder instead of a broken image.
document.addEventListener("error", (event) => {
  const picture = event.target;
  if (!(picture instanceof HTMLImageElement) || !picture.closest(".picture")) return;
  const placeholder = document.createElement("div");
  placeholder.className = "placeholder";
  placeholder.setAttribute("role", "img");
  placeholder.setAttribute("aria-label", picture.alt + " (could not be loaded)");
  placeholder.textContent = "no picture";
  picture.replaceWith(placeholder);
}, true);
