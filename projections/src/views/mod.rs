//! The read models, one file each: how events of one aggregate type become
//! rows. All SQL here is the same text on Postgres and SQLite.
pub mod companies;
pub mod customers;
pub mod photos;
pub mod users;

use crate::view::Projection;

/// Every view, writing into its live tables.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(companies::CompaniesView::new("")),
        Box::new(users::UsersView::new("")),
        Box::new(customers::CustomersView::new("")),
        Box::new(photos::PhotosView::new("")),
    ]
}

/// The view called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Projection>> {
    all().into_iter().find(|view| view.name() == name)
}
