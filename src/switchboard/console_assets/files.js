// File cards: what a person sent and what the agent made, with a download button (a signed
// link, so no token travels in a URL) and, for images, a thumbnail.
import { badge, h } from "./dom.js";

function size(bytes) {
  if (bytes === null || bytes === undefined) return "size unknown";
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(0)} KB`;
  return `${bytes} bytes`;
}

function card(file) {
  const image = file.download && file.type.startsWith("image/");
  return h("li", { class: "file-card", "data-file": file.id },
    image ? h("img", { class: "thumb", src: file.download, alt: file.name, loading: "lazy" })
      : h("span", { class: "file-icon", "aria-hidden": "true",
        text: (file.name.split(".").pop() || "file").slice(0, 4).toUpperCase() }),
    h("div", { class: "file-meta" },
      h("strong", { class: "file-name", text: file.name }),
      h("span", { class: "muted", text: `${file.type} · ${size(file.size)} · ` +
        (file.direction === "out" ? "from the agent" : "from the person") }),
      badge(file.status),
      file.reason ? h("span", { class: "error-text", text: file.reason }) : null),
    file.download ? h("a", { class: "button", href: file.download, download: file.name,
      text: "Download", "aria-label": `Download ${file.name}` }) : null);
}

/** The "Files" section of a turn or a session, or nothing when there are none. */
export function fileCards(files) {
  if (!files || !files.length) return null;
  return h("section", { "aria-labelledby": "files-h" },
    h("h2", { id: "files-h", text: "Files" }),
    h("ul", { class: "file-cards" }, files.map(card)));
}
