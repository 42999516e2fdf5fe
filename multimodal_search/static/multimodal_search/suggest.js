/* The search box's autocomplete: as the shopper types (2+ characters, 120 ms after the last key) a
   listbox under the words offers categories and products from GET <data-mm-suggest>?q=... (the
   API's autocomplete). ARIA 1.2 combobox: arrows move, Enter chooses, Escape closes. A product opens
   its page; a category searches within it. Without this script the box is a plain search form. */
(function () {
  "use strict";

  var DELAY_MS = 120;
  var MIN_CHARS = 2;

  function setUp(form) {
    var endpoint = form.getAttribute("data-mm-suggest");
    var input = form.querySelector("input[type=search]");
    if (!endpoint || !input || !window.fetch) { return; }
    var status = form.querySelector("[data-mm-status]");
    var listId = input.id + "-suggest";
    var list = document.createElement("div");
    list.id = listId;
    list.className = "mm-suggest";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Suggestions");
    list.hidden = true;
    form.appendChild(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listId);

    var options = [];
    var active = -1;
    var timer = null;
    var asked = 0;
    var controller = null;

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(index) {
      options.forEach(function (option, i) { option.node.setAttribute("aria-selected", i === index ? "true" : "false"); });
      active = index;
      if (index < 0) { input.removeAttribute("aria-activedescendant"); return; }
      input.setAttribute("aria-activedescendant", options[index].node.id);
      options[index].node.scrollIntoView({ block: "nearest" });
    }

    function choose(option) {
      close();
      window.location.href = option.href;
    }

    function group(label, key) {
      var box = document.createElement("div");
      box.setAttribute("role", "group");
      var head = document.createElement("div");
      head.id = listId + "-" + key;
      head.className = "mm-suggest-head";
      head.setAttribute("role", "presentation");
      head.textContent = label;
      box.setAttribute("aria-labelledby", head.id);
      box.appendChild(head);
      list.appendChild(box);
      return box;
    }

    function addOption(box, href, build) {
      var node = document.createElement("div");
      node.id = listId + "-" + options.length;
      node.className = "mm-suggest-option";
      node.setAttribute("role", "option");
      node.setAttribute("aria-selected", "false");
      build(node);
      var option = { node: node, href: href };
      node.addEventListener("mousedown", function (event) { event.preventDefault(); }); // keep the focus
      node.addEventListener("click", function () { choose(option); });
      options.push(option);
      box.appendChild(node);
    }

    function show(data) {
      list.textContent = "";
      options = [];
      active = -1;
      var searchUrl = form.getAttribute("action") || "";
      if (data.categories.length) {
        var categories = group("Categories", "categories");
        data.categories.forEach(function (item) {
          var href = searchUrl + "?" + new URLSearchParams({ q: item.query, category: item.path }).toString();
          addOption(categories, href, function (node) {
            node.appendChild(document.createTextNode(item.path + " "));
            var count = document.createElement("span");
            count.className = "mm-suggest-count";
            count.textContent = "(" + item.count + ")";
            node.appendChild(count);
          });
        });
      }
      if (data.products.length) {
        var products = group("Products", "products");
        data.products.forEach(function (item) {
          addOption(products, item.url, function (node) {
            if (item.image) {
              var img = document.createElement("img");
              img.src = item.image;
              img.alt = "";
              img.width = 32;
              img.height = 32;
              node.appendChild(img);
            }
            node.appendChild(document.createTextNode(item.title));
            if (item.detail) {
              var detail = document.createElement("span");
              detail.className = "mm-suggest-detail";
              detail.textContent = " · " + item.detail;
              node.appendChild(detail);
            }
          });
        });
      }
      if (!options.length) { close(); return; }
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      if (status) { status.textContent = options.length + " suggestions; use the up and down arrows."; }
    }

    function ask() {
      var words = input.value.trim();
      if (words.length < MIN_CHARS) { close(); return; }
      asked += 1;
      var mine = asked;
      if (controller) { controller.abort(); }
      controller = typeof AbortController === "undefined" ? null : new AbortController();
      var url = endpoint + "?" + new URLSearchParams({ q: words.slice(0, 100) }).toString();
      fetch(url, { headers: { Accept: "application/json" }, signal: controller ? controller.signal : undefined })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) { if (mine === asked && data) { show(data); } })
        .catch(function () { /* aborted or offline: the plain search still works */ });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, DELAY_MS);
    });
    input.addEventListener("keydown", function (event) {
      var open = !list.hidden && options.length;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!open) { if (event.key === "ArrowDown") { ask(); } return; }
        event.preventDefault();
        // -1 is the words themselves: down from the last option, or up from the first, goes back to them
        var next = active + (event.key === "ArrowDown" ? 1 : -1);
        highlight(next >= options.length ? -1 : next < -1 ? options.length - 1 : next);
      } else if (event.key === "Enter" && open && active >= 0) {
        event.preventDefault(); // the chosen suggestion, not the form
        choose(options[active]);
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault(); // close the list, keep the words
        close();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });
    form.addEventListener("submit", close);
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-mm-search-box][data-mm-suggest]"), setUp);
}());
