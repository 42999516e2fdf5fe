/* The search box's photo helpers: drag-and-drop, paste and a preview. Without this script the
   photo button still works (the form is a plain multipart POST). */
(function () {
  "use strict";

  function setUp(form) {
    var files = Array.prototype.slice.call(form.querySelectorAll("[data-mm-file]"));
    var preview = form.querySelector("[data-mm-preview]");
    var kept = form.querySelector("[data-mm-kept]");
    var status = form.querySelector("[data-mm-status]");
    var shownUrl = null;

    function chosen() {
      return files.filter(function (input) { return input.files && input.files.length; })[0];
    }

    function show(input) {
      files.forEach(function (other) { if (other !== input) { other.value = ""; } });
      if (shownUrl) { URL.revokeObjectURL(shownUrl); }
      shownUrl = URL.createObjectURL(input.files[0]);
      preview.querySelector("img").src = shownUrl;
      preview.hidden = false;
      if (kept) { kept.hidden = true; kept.querySelector("input").disabled = true; }
      status.textContent = "Photo added. Add words if you like, then press Search.";
    }

    function clear() {
      files.forEach(function (input) { input.value = ""; });
      preview.hidden = true;
      if (kept) { kept.hidden = false; kept.querySelector("input").disabled = false; }
      status.textContent = "Photo removed.";
      form.querySelector("input[type=search]").focus();
    }

    function useFile(file) {
      if (!file || !/^image\//.test(file.type) || typeof DataTransfer === "undefined") { return false; }
      var transfer = new DataTransfer();
      transfer.items.add(file);
      files[0].files = transfer.files;
      show(files[0]);
      return true;
    }

    files.forEach(function (input) {
      input.addEventListener("change", function () { if (input.files.length) { show(input); } else { clear(); } });
    });
    preview.querySelector("button").addEventListener("click", clear);

    form.addEventListener("dragover", function (event) {
      if (Array.prototype.indexOf.call(event.dataTransfer.types, "Files") < 0) { return; }
      event.preventDefault();
      form.classList.add("mm-dragging");
    });
    form.addEventListener("dragleave", function () { form.classList.remove("mm-dragging"); });
    form.addEventListener("drop", function (event) {
      form.classList.remove("mm-dragging");
      if (event.dataTransfer.files.length) {
        event.preventDefault();
        if (!useFile(event.dataTransfer.files[0])) { status.textContent = "That file is not a photo."; }
      }
    });

    document.addEventListener("paste", function (event) {
      var items = event.clipboardData ? event.clipboardData.items : [];
      for (var i = 0; i < items.length; i += 1) {
        if (items[i].kind === "file" && /^image\//.test(items[i].type)) {
          event.preventDefault();
          useFile(items[i].getAsFile());
          return;
        }
      }
    });

    // words only (or words and the kept photo): a plain GET, so the address is clean at once
    form.addEventListener("submit", function () {
      if (chosen()) { return; }
      files.forEach(function (input) { input.disabled = true; });
      var csrf = form.querySelector("input[name=csrfmiddlewaretoken]");
      if (csrf) { csrf.disabled = true; }
      form.method = "get";
      form.enctype = "application/x-www-form-urlencoded";
    });
    // a page restored from the back/forward cache gets its inputs back
    window.addEventListener("pageshow", function () {
      files.forEach(function (input) { input.disabled = false; });
      var csrf = form.querySelector("input[name=csrfmiddlewaretoken]");
      if (csrf) { csrf.disabled = false; }
      form.method = "post";
      form.enctype = "multipart/form-data";
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-mm-search-box]"), setUp);
}());
