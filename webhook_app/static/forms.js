// The status page's "track another branch" form posts to the chosen repository's project.
// Kept out of the page: the Content-Security-Policy allows no inline script or handler.
document.querySelectorAll("select[data-sets-form-action]").forEach(function (select) {
  select.addEventListener("change", function () { select.form.action = select.value; });
});
