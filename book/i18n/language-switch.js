// The language switch: a link in every page's header to the same page in
// the other edition. `cargo xtask book` builds English at the site's root
// and Brazilian Portuguese in pt-BR/; mdBook sets <html lang> from
// book.language and `path_to_root` from the page's depth, which is all this
// needs, so it works from a web server and from file:// alike.
(function () {
    "use strict";
    var portuguese = document.documentElement.lang === "pt-BR";
    var bar = document.querySelector(".menu-bar .right-buttons");
    if (!bar || typeof path_to_root !== "string") {
        return;
    }
    var root = new URL(path_to_root || "./", window.location.href);
    var page = window.location.pathname.slice(root.pathname.length) || "index.html";
    // A heading's anchor is made from its (translated) text, so only the
    // page is kept, not the #fragment.
    var target = new URL((portuguese ? "../" : "pt-BR/") + page, root);

    var link = document.createElement("a");
    link.href = target.href;
    link.className = "language-switch";
    link.hreflang = portuguese ? "en" : "pt-BR";
    link.lang = link.hreflang;
    link.title = portuguese ? "Read this page in English" : "Ler esta página em português";
    link.setAttribute("aria-label", link.title);
    link.textContent = portuguese ? "EN" : "PT-BR";
    link.style.fontWeight = "bold";
    link.style.marginInline = "0.5em";
    link.style.textDecoration = "none";
    link.style.color = "var(--icons)";
    bar.insertBefore(link, bar.firstChild);
})();
